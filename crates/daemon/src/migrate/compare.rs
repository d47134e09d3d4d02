//! Comparing two socketmap replies for one destination (postfix-mta-sts-resolver's and
//! ours), and naming the reason when ours differs on purpose. Pure: replies in, verdict out.
//!
//! Two replies are the same when they are equal after putting the `match=` patterns and the
//! TLS-RPT attributes in one order: the peer writes its patterns in Python `set()` order,
//! ours in policy order (Postfix does not care).

use std::collections::BTreeSet;
use std::fmt;

/// What one server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A reply payload (`OK secure match=…`, `NOTFOUND `, `TEMP …`).
    Reply(String),
    /// No reply: the connection failed, closed or timed out (the text says which).
    Failed(String),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Reply(r) => write!(f, "{r:?}"),
            Answer::Failed(why) => write!(f, "no reply ({why})"),
        }
    }
}

/// The outcome for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The same reply (possibly in another pattern order).
    Same,
    /// Different replies, and why.
    Differs(Reason),
}

/// Why the replies differ. `on_purpose` reasons are documented behaviour of ours
/// (docs/migrating.md); the others need a look (`mta-sts query DOMAIN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Ours answers `OK dane-only`: RFC 8461 §2, DANE takes precedence (`dane = "defer"`).
    DanePrecedence,
    /// The other server answers a DANE level (`dane`, `dane-only`: postfix-tlspol does for
    /// DNSSEC-signed MX hosts with TLSA records) where ours answers `NOTFOUND `: without an
    /// MTA-STS policy ours leaves the domain to Postfix's own `smtp_tls_security_level = dane`.
    PeerDaneLevel,
    /// Ours keeps the message (`TEMP` or `policy_failure=`) where the peer delivers as
    /// without a policy: `on_failure = "temp"`.
    OnFailureTemp,
    /// The peer answers `secure` with an empty `match=` (a policy without `mx` lines); ours
    /// refuses such a policy (RFC 8461 §3.2: `mx` is required for `enforce`/`testing`).
    PeerEmptyMatch,
    /// The peer applies a policy where ours finds none usable: ours parses RFC 8461 §3.1 and
    /// §3.2 exactly (e.g. `max_age: 86_400`, an empty TXT `id`) and
    /// keeps the first of repeated keys; or the peer still applies an old cached policy.
    OursStricter,
    /// Ours applies a policy where the peer finds none: ours clamps `max_age` above
    /// 31557600 (RFC 8461 erratum 7282) where the peer refuses the policy; or the peer's
    /// lookup failed or timed out.
    OursAccepts,
    /// Both apply a policy but with other patterns: one side applies a cached policy the
    /// other has refetched (the peer keeps a cached policy while the TXT id is unchanged).
    PatternsDiffer,
    /// The same `secure match=…` but other TLS-RPT attributes (zone `tlsrpt` differs).
    TlsrptAttributes,
    /// One side gave no reply.
    NoReply,
    /// Anything else.
    Unexplained,
}

impl Reason {
    /// Whether ours differs on purpose (a documented choice, not a fault of either side).
    pub fn on_purpose(self) -> bool {
        matches!(
            self,
            Reason::DanePrecedence
                | Reason::PeerDaneLevel
                | Reason::OnFailureTemp
                | Reason::PeerEmptyMatch
                | Reason::OursStricter
                | Reason::OursAccepts
        )
    }

    /// One sentence for the report.
    pub fn explain(self) -> &'static str {
        match self {
            Reason::DanePrecedence => {
                "on purpose: DANE precedence (RFC 8461 §2): the zone has dane = \"defer\" and every MX has DNSSEC-validated TLSA records, so Postfix authenticates with DANE"
            }
            Reason::PeerDaneLevel => {
                "on purpose: no MTA-STS policy applies, so ours answers NOTFOUND and Postfix's own smtp_tls_security_level (dane, with smtp_dns_support_level = dnssec) does the DANE the other server asked for"
            }
            Reason::OnFailureTemp => {
                "on purpose: the zone has on_failure = \"temp\": a failed lookup with nothing cached defers the mail instead of delivering it as without MTA-STS"
            }
            Reason::PeerEmptyMatch => {
                "on purpose: the policy lists no mx; the peer answers secure with an empty match= (no certificate can match), ours refuses the policy (RFC 8461 §3.2)"
            }
            Reason::OursStricter => {
                "on purpose if the policy or record breaks RFC 8461 §3.1/§3.2 (e.g. max_age: 86_400, an empty id, repeated keys: ours takes the first); otherwise the peer applies an old cached policy. `mta-sts query DOMAIN` shows which"
            }
            Reason::OursAccepts => {
                "on purpose if the policy's max_age is above 31557600 (ours clamps it, RFC 8461 erratum 7282; the peer refuses the policy); otherwise the peer's lookup failed or timed out. `mta-sts query DOMAIN` shows which"
            }
            Reason::PatternsDiffer => {
                "the policies differ: one side applies a cached policy the other has refetched; compare again later"
            }
            Reason::TlsrptAttributes => {
                "same policy, other TLS-RPT attributes: the zones' tlsrpt settings differ"
            }
            Reason::NoReply => "one server did not answer",
            Reason::Unexplained => "not explained: look at both servers' logs",
        }
    }
}

/// A reply split into its verb and its attributes, order-free where Postfix is.
#[derive(Debug, PartialEq, Eq)]
struct Shape<'a> {
    verb: &'a str,
    level: Option<&'a str>,
    matches: BTreeSet<&'a str>,
    sni: bool,
    /// TLS-RPT attributes and `policy_string` groups, sorted.
    rest: BTreeSet<&'a str>,
}

fn shape(reply: &str) -> Shape<'_> {
    let (verb, data) = reply.split_once(' ').unwrap_or((reply, ""));
    let mut level = None;
    let mut matches = BTreeSet::new();
    let mut sni = false;
    let mut rest = BTreeSet::new();
    // `{ policy_string = … }` groups hold spaces: take them whole.
    let mut tail = data;
    while let Some(open) = tail.find('{') {
        words(&tail[..open], &mut level, &mut matches, &mut sni, &mut rest);
        let close = tail[open..].find('}').map_or(tail.len(), |c| open + c + 1);
        rest.insert(tail[open..close].trim());
        tail = &tail[close..];
    }
    words(tail, &mut level, &mut matches, &mut sni, &mut rest);
    Shape {
        verb,
        level,
        matches,
        sni,
        rest,
    }
}

fn words<'a>(
    text: &'a str,
    level: &mut Option<&'a str>,
    matches: &mut BTreeSet<&'a str>,
    sni: &mut bool,
    rest: &mut BTreeSet<&'a str>,
) {
    for word in text.split_whitespace() {
        if level.is_none() && !word.contains('=') {
            *level = Some(word);
        } else if let Some(list) = word.strip_prefix("match=") {
            matches.extend(list.split(':').filter(|p| !p.is_empty()));
        } else if word == "servername=hostname" {
            *sni = true;
        } else {
            rest.insert(word);
        }
    }
}

/// Compares the peer's answer with ours.
pub fn compare(peer: &Answer, ours: &Answer) -> Verdict {
    let (peer, ours) = match (peer, ours) {
        (Answer::Reply(p), Answer::Reply(o)) => (p.as_str(), o.as_str()),
        _ => return Verdict::Differs(Reason::NoReply),
    };
    if peer == ours {
        return Verdict::Same;
    }
    let (p, o) = (shape(peer), shape(ours));
    if p == o {
        return Verdict::Same;
    }
    let secure = |s: &Shape<'_>| s.verb == "OK" && s.level == Some("secure");
    let reason = if o.verb == "OK" && o.level == Some("dane-only") {
        Reason::DanePrecedence
    } else if p.verb == "OK"
        && matches!(p.level, Some("dane" | "dane-only"))
        && o.verb == "NOTFOUND"
    {
        Reason::PeerDaneLevel
    } else if o.verb == "TEMP" || o.rest.iter().any(|w| w.starts_with("policy_failure=")) {
        Reason::OnFailureTemp
    } else if secure(&p) && p.matches.is_empty() && !secure(&o) {
        Reason::PeerEmptyMatch
    } else if secure(&p) && o.verb == "NOTFOUND" {
        Reason::OursStricter
    } else if p.verb == "NOTFOUND" && secure(&o) {
        Reason::OursAccepts
    } else if secure(&p) && secure(&o) && p.matches != o.matches {
        Reason::PatternsDiffer
    } else if secure(&p) && secure(&o) && p.sni == o.sni {
        Reason::TlsrptAttributes
    } else {
        Reason::Unexplained
    };
    Verdict::Differs(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Answer {
        Answer::Reply(s.to_owned())
    }

    #[test]
    fn pattern_and_attribute_order_is_not_a_difference() {
        assert_eq!(
            compare(
                &r("OK secure match=.mx.wild.test:.wild.test:mail.wild.test servername=hostname"),
                &r("OK secure match=mail.wild.test:.wild.test:.mx.wild.test servername=hostname"),
            ),
            Verdict::Same
        );
        assert_eq!(
            compare(
                &r(
                    "OK secure match=a policy_type=sts { policy_string = mx: a } { policy_string = version: STSv1 }"
                ),
                &r(
                    "OK secure match=a policy_type=sts { policy_string = version: STSv1 } { policy_string = mx: a }"
                ),
            ),
            Verdict::Same
        );
    }

    #[test]
    fn reasons() {
        let secure = r("OK secure match=mail.loc servername=hostname");
        let cases = [
            (&secure, r("OK dane-only"), Reason::DanePrecedence),
            (&r("OK dane"), r("OK dane-only"), Reason::DanePrecedence),
            (&r("OK dane"), r("NOTFOUND "), Reason::PeerDaneLevel),
            (&secure, r("NOTFOUND "), Reason::OursStricter),
            (&r("NOTFOUND "), secure.clone(), Reason::OursAccepts),
            (
                &r("OK secure match= servername=hostname"),
                r("NOTFOUND "),
                Reason::PeerEmptyMatch,
            ),
            (
                &r("NOTFOUND "),
                r("TEMP MTA-STS policy for x unavailable: timeout"),
                Reason::OnFailureTemp,
            ),
            (
                &secure,
                r("OK secure match=mx.loc servername=hostname"),
                Reason::PatternsDiffer,
            ),
            (
                &secure,
                r("OK secure match=mail.loc servername=hostname policy_type=sts"),
                Reason::TlsrptAttributes,
            ),
            (&secure, r("OK secure match=mail.loc"), Reason::Unexplained),
            (
                &secure,
                Answer::Failed("connection refused".into()),
                Reason::NoReply,
            ),
            // Two servers that both fail are no evidence of the same answers.
            (
                &Answer::Failed("connection refused".into()),
                Answer::Failed("connection refused".into()),
                Reason::NoReply,
            ),
        ];
        for (peer, ours, reason) in cases {
            assert_eq!(
                compare(peer, &ours),
                Verdict::Differs(reason),
                "{peer} vs {ours}"
            );
        }
        assert!(Reason::DanePrecedence.on_purpose());
        assert!(!Reason::Unexplained.on_purpose());
    }
}
