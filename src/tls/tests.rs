use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A self-signed certificate for `names`, written to fresh files.
fn files(label: &str, names: &[&str]) -> Written {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    write(
        label,
        &generated.cert.pem(),
        &generated.key_pair.serialize_pem(),
    )
}

/// Files written for a test, removed on drop.
struct Written(CertificatePaths);

impl std::ops::Deref for Written {
    type Target = CertificatePaths;
    fn deref(&self) -> &CertificatePaths {
        &self.0
    }
}

impl Written {
    fn paths(&self) -> CertificatePaths {
        self.0.clone()
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0.cert);
        let _ = std::fs::remove_file(&self.0.key);
    }
}

fn write(label: &str, cert: &str, key: &str) -> Written {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::temp_dir().join(format!(
        "cloakroom-tls-unit-{}-{label}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let paths = CertificatePaths {
        cert: base.with_extension("crt"),
        key: base.with_extension("key"),
    };
    std::fs::write(&paths.cert, cert).unwrap();
    std::fs::write(&paths.key, key).unwrap();
    Written(paths)
}

fn leaf(key: &CertifiedKey) -> &[u8] {
    key.cert[0].as_ref()
}

#[test]
fn sni_picks_by_exact_name_then_wildcard_then_default() {
    let a = files("a", &["a.test"]);
    let b = files("b", &["b.test", "*.wild.test"]);
    let set = load(&[a.paths(), b.paths()]).unwrap();
    let default = set.pick(None);
    assert_eq!(leaf(&set.pick(Some("a.test"))), leaf(&default));
    let b_cert = set.pick(Some("B.TEST"));
    assert_ne!(leaf(&b_cert), leaf(&default));
    assert_eq!(leaf(&set.pick(Some("x.wild.test"))), leaf(&b_cert));
    assert_eq!(leaf(&set.pick(Some("y.x.wild.test"))), leaf(&default));
    assert_eq!(leaf(&set.pick(Some("other.test"))), leaf(&default));
    assert_eq!(set.names(), ["a.test", "b.test", "*.wild.test"]);
}

#[test]
fn a_key_that_does_not_match_is_refused_naming_the_key_file() {
    let a = files("a", &["a.test"]);
    let b = files("b", &["b.test"]);
    let mixed = CertificatePaths {
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    let problems = load(&[mixed]).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].part, Part::Key);
    assert_eq!(problems[0].file, b.key);
    assert!(
        problems[0].message.contains("does not match"),
        "{problems:?}"
    );
}

#[test]
fn missing_and_empty_files_are_named() {
    let a = files("a", &["a.test"]);
    let missing = CertificatePaths {
        cert: a.cert.with_extension("nope"),
        key: a.key.clone(),
    };
    let no_key = write("nokey", &std::fs::read_to_string(&a.cert).unwrap(), "");
    let problems = load(&[missing.clone(), no_key.paths()]).unwrap_err();
    assert_eq!(problems[0].file, missing.cert);
    assert!(problems[0].message.contains("does not exist"));
    assert_eq!(problems[1].file, no_key.key);
    assert!(problems[1].message.contains("no private key"));
}

#[test]
fn an_expired_certificate_is_refused() {
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let old = write("old", &cert.pem(), &key.serialize_pem());
    let problems = load(&[old.paths()]).unwrap_err();
    assert!(
        problems[0].message.contains("expired on 2001-01-01"),
        "{problems:?}"
    );
}

/// The key inside a PKCS#8 `PrivateKeyInfo` (for RSA its PKCS#1 form, for
/// EC its SEC1 form), as PEM with `label`.
fn unwrap_pkcs8(pkcs8_der: &[u8], label: &str) -> String {
    use base64::Engine as _;
    let (_, info, _) = super::expiry::element(pkcs8_der).unwrap();
    let (_, _, rest) = super::expiry::element(info).unwrap(); // version
    let (_, _, rest) = super::expiry::element(rest).unwrap(); // algorithm
    let (tag, inner, _) = super::expiry::element(rest).unwrap();
    assert_eq!(tag, 0x04, "an OCTET STRING");
    let text = base64::engine::general_purpose::STANDARD.encode(inner);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn rsa_pkcs1_and_ec_sec1_keys_load() {
    let rsa = rcgen::KeyPair::from_pem(include_str!("testdata/rsa-2048.pk8.pem")).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["rsa.test".to_owned()])
        .unwrap()
        .self_signed(&rsa)
        .unwrap();
    let pkcs1 = unwrap_pkcs8(&rsa.serialize_der(), "RSA PRIVATE KEY");
    let rsa_files = write("rsa", &cert.pem(), &pkcs1);

    let ec = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ec.test".to_owned()])
        .unwrap()
        .self_signed(&ec)
        .unwrap();
    let sec1 = unwrap_pkcs8(&ec.serialize_der(), "EC PRIVATE KEY");
    let ec_files = write("ec", &cert.pem(), &sec1);

    let set = load(&[rsa_files.paths(), ec_files.paths()]).unwrap();
    assert_eq!(set.names(), ["rsa.test", "ec.test"]);
}

#[test]
fn debug_shows_names_not_keys() {
    let set = load(&[files("a", &["a.test"]).paths()]).unwrap();
    let shown = format!("{set:?}");
    assert!(shown.contains("a.test"));
    assert!(!shown.contains("PRIVATE"));
}
