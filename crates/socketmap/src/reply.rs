//! Postfix `socketmap_table(5)` replies: `OK <data>`, `NOTFOUND `, `TEMP <reason>`,
//! `TIMEOUT <reason>`, `PERM <reason>`, each sent as one netstring.
//!
//! ```
//! use mta_sts_socketmap::Reply;
//! assert_eq!(Reply::NotFound.encode(), b"9:NOTFOUND ,");
//! assert_eq!(Reply::Perm("bad\nkey".into()).payload(), "PERM bad key");
//! ```

use std::borrow::Cow;
use std::fmt;

/// A socketmap reply (`socketmap_table(5)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK <data>`: the lookup found `data` (a TLS policy such as `secure match=…`).
    Ok(String),
    /// `NOTFOUND ` (with one trailing space, as postfix-mta-sts-resolver sends it).
    NotFound,
    /// `TEMP <reason>`: temporary failure; Postfix defers the delivery.
    Temp(String),
    /// `TIMEOUT <reason>`: the lookup timed out; Postfix defers the delivery.
    Timeout(String),
    /// `PERM <reason>`: permanent failure (a configuration or request problem).
    Perm(String),
}

impl Reply {
    /// The reply payload, e.g. `OK secure match=mx.example servername=hostname`, `NOTFOUND `.
    ///
    /// Reasons are sanitised: control characters become spaces, so a reply never breaks
    /// Postfix's logging.
    pub fn payload(&self) -> String {
        match self {
            Reply::Ok(data) => format!("OK {}", sanitise(data)),
            Reply::NotFound => "NOTFOUND ".to_owned(),
            Reply::Temp(reason) => format!("TEMP {}", sanitise(reason)),
            Reply::Timeout(reason) => format!("TIMEOUT {}", sanitise(reason)),
            Reply::Perm(reason) => format!("PERM {}", sanitise(reason)),
        }
    }

    /// The reply as a netstring, ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the reply as a netstring to `out` (no intermediate allocation).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (word, text): (&str, &str) = match self {
            Reply::Ok(data) => ("OK ", data),
            Reply::NotFound => ("NOTFOUND ", ""),
            Reply::Temp(reason) => ("TEMP ", reason),
            Reply::Timeout(reason) => ("TIMEOUT ", reason),
            Reply::Perm(reason) => ("PERM ", reason),
        };
        let text = sanitise(text);
        let len = word.len() + text.len();
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(word.as_bytes());
        out.extend_from_slice(text.as_bytes());
        out.push(b',');
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.payload())
    }
}

fn sanitise(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}
