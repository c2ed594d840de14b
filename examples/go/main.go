// A net/http app behind Cloakroom: the session comes in request headers, Set-Session changes it.
package main

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"os"
	"strings"
)

const page = "<!doctype html><meta charset=utf-8><title>Cloakroom example</title>\n%s\n"

func handle(w http.ResponseWriter, r *http.Request) {
	session, name := struct{ Cart map[string]int }{map[string]int{}}, r.Header.Get("X-User")
	_ = json.Unmarshal([]byte(r.Header.Get("X-Session")), &session) // the session as JSON, absent without one
	if strings.HasPrefix(name, "json:") && json.Unmarshal([]byte(name[5:]), &name) != nil {
		name = name[5:] // X-User (/user/name) is text, or "json:" and JSON: here not a JSON string
	}
	route := r.Method + " " + r.URL.Path
	field := map[string]string{"POST /login": "username", "POST /cart": "item"}[route]
	patch := func(v any) string { b, _ := json.Marshal(v); return string(b) } // Cloakroom reads UTF-8 JSON
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // every page depends on the session
	switch value := strings.TrimSpace(r.PostFormValue(field)); {
	case field != "" && value == "":
		http.Error(w, field+" required", http.StatusBadRequest)
	case route == "GET /" || route == "GET /login": // Cloakroom sends browsers denied a login-only page to /login
		who := "<p>Not signed in.</p><form method=post action=/login><input name=username><button>Log in</button></form>"
		if name != "" {
			who = "<p>Signed in as <b>" + html.EscapeString(name) + "</b>.</p><form method=post action=/logout><button>Log out</button></form>"
		}
		fmt.Fprintf(w, page, who+"\n<form method=post action=/cart><input name=item><button>Add to cart</button></form>\n<p><a href=/cart>Cart</a> <a href=/account>Account</a></p>")
	case route == "GET /account": // login-only in proxy.toml: only signed-in visitors get here
		fmt.Fprintf(w, page, "<p>Account of <b>"+html.EscapeString(name)+"</b>.</p>")
	case route == "GET /cart":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(session.Cart)
	case route == "POST /login": // a new session id first (against session fixation), then the data
		w.Header()["Set-Session"] = []string{"regenerate", patch(map[string]any{"user": map[string]string{"name": value}})}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case route == "POST /logout":
		w.Header().Set("Set-Session", "destroy")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case route == "POST /cart": // a merge patch: only this item's count changes, the rest of the session stays
		w.Header().Set("Set-Session", patch(map[string]any{"cart": map[string]int{value: session.Cart[value] + 1}}))
		http.Redirect(w, r, "/cart", http.StatusSeeOther)
	default:
		http.NotFound(w, r)
	}
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "3000"
	}
	panic(http.ListenAndServe("127.0.0.1:"+port, http.HandlerFunc(handle)))
}
