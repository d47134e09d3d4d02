//! Who may read the dashboard. Loopback needs nothing; any other listen address needs a
//! token, sent as `Authorization: Bearer TOKEN` (scripts) or as the password of HTTP Basic
//! authentication (browsers ask for it; the user name is ignored).

use std::net::SocketAddr;

use base64::Engine as _;

/// The authentication the server requires.
#[derive(Clone, Default)]
pub enum Auth {
    /// None: only allowed on a loopback address.
    #[default]
    None,
    /// This token (compared by SHA-256 digest, so timing says nothing about it).
    Token(Vec<u8>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Token(_) => f.write_str("Auth::Token(…)"),
        }
    }
}

/// Why the authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A non-loopback listen address without authentication.
    #[error(
        "refusing to listen on {addr} without authentication: pass --token-file FILE (or listen on 127.0.0.1)"
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

    /// Refuses a non-loopback `addr` without authentication.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), AuthError> {
        match self {
            Auth::None if !addr.ip().is_loopback() => Err(AuthError::NeedsAuth { addr }),
            _ => Ok(()),
        }
    }

    /// Whether a request with this `Authorization` header value may pass.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Auth::Token(token) = self else {
            return true;
        };
        let Some(value) = authorization else {
            return false;
        };
        let presented: Vec<u8> = if let Some(t) = strip_scheme(value, "Bearer") {
            t.trim().as_bytes().to_vec()
        } else if let Some(b) = strip_scheme(value, "Basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
                return false;
            };
            match decoded.iter().position(|&c| c == b':') {
                Some(i) => decoded[i + 1..].to_vec(),
                None => return false,
            }
        } else {
            return false;
        };
        digest(&presented) == digest(token)
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
