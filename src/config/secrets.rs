//! Signing secrets: where they come from (the `Secret` newtype itself is
//! the domain's).
//!
//! Exactly one source may provide them: the environment variable named by
//! `secrets_env`, the file named by `secrets_file`, or the inline `secrets`
//! list. Env and file hold one secret per line. With none, an ephemeral
//! random secret is made (and the operator warned).

pub use crate::domain::secret::Secret;

/// Secrets shorter than this draw a warning (express-session accepts any
/// length, so refusing them would block migrations).
pub const RECOMMENDED_SECRET_BYTES: usize = 32;

/// The signing secrets, first one signing.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub list: Vec<Secret>,
    /// True when made up at start-up: sessions die with the process.
    pub ephemeral: bool,
}

/// Where the secrets were configured to come from.
pub struct SecretSources<'a> {
    pub inline: &'a [String],
    pub env_value: Option<String>,
    pub file: Option<&'a str>,
}

/// Why secrets could not be had; each names the key to fix.
#[derive(Debug)]
pub struct SecretProblem {
    pub key: &'static str,
    pub message: String,
}

/// Collects the secrets from exactly one source.
pub fn resolve(sources: SecretSources<'_>) -> Result<Secrets, SecretProblem> {
    let mut found: Vec<(&'static str, Vec<Secret>)> = Vec::new();
    if let Some(value) = sources.env_value.filter(|v| !v.trim().is_empty()) {
        found.push(("session.secrets_env", lines(&value)));
    }
    if let Some(path) = sources.file {
        let text = std::fs::read_to_string(path).map_err(|e| SecretProblem {
            key: "session.secrets_file",
            message: format!("cannot read {path}: {e}; fix the path or remove the key"),
        })?;
        let list = lines(&text);
        if list.is_empty() {
            return Err(SecretProblem {
                key: "session.secrets_file",
                message: format!(
                    "{path} holds no secret; put one per line (cloakroom secret makes one)"
                ),
            });
        }
        found.push(("session.secrets_file", list));
    }
    if !sources.inline.is_empty() {
        if sources.inline.iter().any(|s| s.is_empty()) {
            return Err(SecretProblem {
                key: "session.secrets",
                message: "an empty secret is not a secret; remove it".into(),
            });
        }
        let list = sources.inline.iter().cloned().map(Secret::new).collect();
        found.push(("session.secrets", list));
    }
    match found.len() {
        0 => {
            let secret = Secret::generate().map_err(|e| SecretProblem {
                key: "session.secrets",
                message: format!("no secret configured and no randomness to make one: {e}"),
            })?;
            Ok(Secrets {
                list: vec![secret],
                ephemeral: true,
            })
        }
        1 => {
            let (_, list) = found.remove(0);
            Ok(Secrets {
                list,
                ephemeral: false,
            })
        }
        _ => Err(SecretProblem {
            key: "session.secrets",
            message: format!(
                "secrets come from {}; keep exactly one source",
                found
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        }),
    }
}

fn lines(text: &str) -> Vec<Secret> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| Secret::new(line.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources<'a>(inline: &'a [String], env: Option<&str>) -> SecretSources<'a> {
        SecretSources {
            inline,
            env_value: env.map(str::to_owned),
            file: None,
        }
    }

    #[test]
    fn env_holds_one_secret_per_line_first_signs() {
        let s = resolve(sources(&[], Some("new\n old \n\n"))).unwrap();
        assert_eq!(s.list.len(), 2);
        assert_eq!(s.list[0].expose(), b"new");
        assert!(!s.ephemeral);
    }

    #[test]
    fn no_source_gives_an_ephemeral_secret() {
        let s = resolve(sources(&[], None)).unwrap();
        assert!(s.ephemeral);
        assert_eq!(s.list[0].expose().len(), 43);
    }

    #[test]
    fn two_sources_are_refused() {
        let inline = vec!["a".to_string()];
        let err = resolve(sources(&inline, Some("b"))).unwrap_err();
        assert!(err.message.contains("keep exactly one"), "{}", err.message);
    }

    #[test]
    fn missing_file_names_the_path() {
        let src = SecretSources {
            inline: &[],
            env_value: None,
            file: Some("no/such/file"),
        };
        let err = resolve(src).unwrap_err();
        assert_eq!(err.key, "session.secrets_file");
        assert!(err.message.contains("no/such/file"));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        assert!(!format!("{:?}", Secret::new("hunter2".into())).contains("hunter2"));
    }
}
