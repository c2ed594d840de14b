module cloakroom.example/app

go 1.19
