//! Who may read the dashboard. Loopback needs nothing; any other listen address needs a
//! token, sent as `Authorization: Bearer TOKEN` (scripts) or as the password of HTTP Basic
//! authentication (browsers ask for it; the user name is ignored), or users with argon2id
//! password hashes (PHC strings, one `name:hash` a line), sent with HTTP Basic.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use base64::Engine as _;

/// The authentication the server requires.
#[derive(Clone, Default)]
pub enum Auth {
    /// None: only allowed on a loopback address.
    #[default]
    None,
    /// This token (compared by SHA-256 digest, so timing says nothing about it).
    Token(Vec<u8>),
    /// These users, by name, with their password hashes.
    Users(Arc<Users>),
}

/// Users and their argon2 password hashes, with the credentials already verified (by
/// SHA-256 digest): a browser sends them with every request, and an argon2 verification
/// costs tens of milliseconds on purpose.
#[derive(Default)]
pub struct Users {
    hashes: BTreeMap<String, String>,
    verified: Mutex<HashSet<Vec<u8>>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} users)", self.hashes.len())
    }
}

impl Users {
    /// Parses a users file: `name:$argon2id$…` a line; blank lines and `#` comments are
    /// skipped. `path` is for messages.
    pub fn parse(text: &str, path: &str) -> Result<Users, AuthError> {
        let mut hashes = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| AuthError::UsersFile {
                path: path.to_owned(),
                line: n + 1,
                why: why.to_owned(),
            };
            let (name, hash) = line
                .split_once(':')
                .ok_or_else(|| bad("expected NAME:HASH"))?;
            if name.is_empty() {
                return Err(bad("the user name is empty"));
            }
            PasswordHash::new(hash).map_err(|e| {
                bad(&format!(
                    "not a password hash ({e}); make one with `mta-sts web --hash-password`"
                ))
            })?;
            if hashes.insert(name.to_owned(), hash.to_owned()).is_some() {
                return Err(bad("this user is listed twice"));
            }
        }
        if hashes.is_empty() {
            return Err(AuthError::UsersFile {
                path: path.to_owned(),
                line: 0,
                why: "no user; add a line NAME:HASH".to_owned(),
            });
        }
        Ok(Users {
            hashes,
            verified: Mutex::new(HashSet::new()),
        })
    }

    fn allows(&self, user: &[u8], password: &[u8]) -> bool {
        let Ok(name) = std::str::from_utf8(user) else {
            return false;
        };
        let Some(hash) = self.hashes.get(name) else {
            return false;
        };
        let mut key = user.to_vec();
        key.push(b':');
        key.extend_from_slice(password);
        let key = digest(&key);
        if self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let ok = PasswordHash::new(hash)
            .is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok());
        if ok && let Ok(mut v) = self.verified.lock() {
            v.insert(key);
        }
        ok
    }
}

/// An argon2id hash (PHC string) of `password` with a random salt, for a users file.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| AuthError::Hash("no random source".into()))?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Token(_) => f.write_str("Auth::Token(…)"),
            Auth::Users(u) => write!(f, "Auth::Users({} users)", u.hashes.len()),
        }
    }
}

/// Why the authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A non-loopback listen address without authentication.
    #[error(
        "refusing to listen on {addr} without authentication: pass --token-file FILE or --users FILE (or listen on 127.0.0.1)"
    )]
    NeedsAuth {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token file could not be read.
    #[error("cannot read the token file {path}")]
    TokenFile {
        /// Its path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the users file is wrong.
    #[error("{path}:{line}: {why}")]
    UsersFile {
        /// Its path.
        path: String,
        /// 1-based line (0: the whole file).
        line: usize,
        /// What is wrong, and the fix.
        why: String,
    },
    /// Hashing a password failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The token file holds fewer than 16 characters (after trimming).
    #[error(
        "the token in {path} is shorter than 16 characters; write a long random one, e.g. `openssl rand -hex 32 > {path}`"
    )]
    WeakToken {
        /// Its path.
        path: String,
    },
}

impl Auth {
    /// Reads a token file (its content, whitespace trimmed).
    pub fn from_token_file(path: &std::path::Path) -> Result<Auth, AuthError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::TokenFile {
            path: shown.clone(),
            source,
        })?;
        let token = text.trim();
        if token.chars().count() < 16 {
            return Err(AuthError::WeakToken { path: shown });
        }
        Ok(Auth::Token(token.as_bytes().to_vec()))
    }

    /// Reads a users file (see [`Users::parse`]).
    pub fn from_users_file(path: &std::path::Path) -> Result<Auth, AuthError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::TokenFile {
            path: shown.clone(),
            source,
        })?;
        Ok(Auth::Users(Arc::new(Users::parse(&text, &shown)?)))
    }

    /// Refuses a non-loopback `addr` without authentication.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), AuthError> {
        match self {
            Auth::None if !addr.ip().is_loopback() => Err(AuthError::NeedsAuth { addr }),
            _ => Ok(()),
        }
    }

    /// Whether a request with this `Authorization` header value may pass.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        if matches!(self, Auth::None) {
            return true;
        }
        let Some(value) = authorization else {
            return false;
        };
        let basic = strip_scheme(value, "Basic").and_then(|b| {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()?;
            let i = decoded.iter().position(|&c| c == b':')?;
            Some((decoded[..i].to_vec(), decoded[i + 1..].to_vec()))
        });
        match self {
            Auth::None => true,
            Auth::Token(token) => {
                let presented = match (strip_scheme(value, "Bearer"), basic) {
                    (Some(t), _) => t.trim().as_bytes().to_vec(),
                    (None, Some((_, password))) => password,
                    (None, None) => return false,
                };
                digest(&presented) == digest(token)
            }
            Auth::Users(users) => {
                basic.is_some_and(|(user, password)| users.allows(&user, &password))
            }
        }
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost`, `127.0.0.1` (any
/// 127/8 address) or `[::1]`, with or without a port. Without authentication the dashboard
/// answers only such requests, so a web page whose name an attacker rebinds to 127.0.0.1
/// (DNS rebinding) cannot read it from the victim's browser.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_nothing_elsewhere_a_token() {
        let any: SocketAddr = "0.0.0.0:8480".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:8480".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8480".parse().unwrap();
        assert!(Auth::None.check_listen(lo).is_ok());
        assert!(Auth::None.check_listen(lo6).is_ok());
        let e = Auth::None.check_listen(any).unwrap_err();
        assert!(e.to_string().contains("--token-file"), "{e}");
        assert!(Auth::Token(b"x".to_vec()).check_listen(any).is_ok());
    }

    #[test]
    fn only_loopback_host_names_pass_without_a_token() {
        for ok in [
            "localhost",
            "localhost:8480",
            "127.0.0.1:8480",
            "127.0.0.2",
            "[::1]:8480",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8480",
            "10.0.0.1:8480",
            "[::2]:1",
            "[::1",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn users_sign_in_with_basic_and_their_password() {
        // A cheap hash (8 MiB, 1 pass) so the test is quick in a debug build.
        let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let hash = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        let users = Users::parse(&format!("# dashboard\nalice:{hash}\n"), "users").unwrap();
        let auth = Auth::Users(Arc::new(users));
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(auth.allows(Some(&basic("alice", "correct horse"))));
        assert!(
            auth.allows(Some(&basic("alice", "correct horse"))),
            "again, from the cache"
        );
        assert!(!auth.allows(Some(&basic("alice", "wrong"))));
        assert!(!auth.allows(Some(&basic("bob", "correct horse"))));
        assert!(!auth.allows(Some("Bearer correct horse")));
        assert!(!auth.allows(None));
        let e = Users::parse("alice:plaintext\n", "users")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("users:1: not a password hash"), "{e}");
        assert!(hash_password("x").unwrap().starts_with("$argon2id$"));
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let auth = Auth::Token(b"0123456789abcdef".to_vec());
        assert!(auth.allows(Some("Bearer 0123456789abcdef")));
        assert!(auth.allows(Some("bearer 0123456789abcdef")));
        // user "me", password = token
        let basic = base64::engine::general_purpose::STANDARD.encode("me:0123456789abcdef");
        assert!(auth.allows(Some(&format!("Basic {basic}"))));
        assert!(!auth.allows(Some("Bearer 0123456789abcdeg")));
        assert!(!auth.allows(Some("Basic !!!")));
        assert!(!auth.allows(None));
        assert!(Auth::None.allows(None));
    }
}
