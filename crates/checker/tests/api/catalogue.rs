//! The finding catalogue, one testkit world per misconfiguration (plus a perfect domain):
//! each case asserts the exact set of finding ids and the verdict.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::common::{checker, config, good, good_with, policy};
use mta_sts_checker::{CheckConfig, Verdict};
use mta_sts_testkit::dns::DnsFault;
use mta_sts_testkit::{CertKind, DomainBuilder, HostBehavior, RecordType, SmtpConfig, World};

type Describe = Box<dyn FnOnce(DomainBuilder) -> DomainBuilder>;
type Tweak = Box<dyn Fn(&World)>;

struct Case {
    domain: &'static str,
    describe: Describe,
    /// SMTP servers to start: (host, STARTTLS certificate or None for plain, refuse).
    smtp: Vec<(String, Option<CertKind>, bool)>,
    /// Changes to the world after start.
    tweak: Option<Tweak>,
    /// Changes to the checker configuration.
    cfg: Option<fn(&mut CheckConfig)>,
    ids: &'static [&'static str],
    verdict: Verdict,
}

fn case(
    domain: &'static str,
    describe: impl FnOnce(DomainBuilder) -> DomainBuilder + 'static,
    ids: &'static [&'static str],
    verdict: Verdict,
) -> Case {
    Case {
        domain,
        describe: Box::new(describe),
        smtp: vec![(format!("mail.{domain}"), Some(CertKind::Valid), false)],
        tweak: None,
        cfg: None,
        ids,
        verdict,
    }
}

impl Case {
    fn smtp(mut self, smtp: Vec<(String, Option<CertKind>, bool)>) -> Self {
        self.smtp = smtp;
        self
    }
    fn mail(self, kind: Option<CertKind>) -> Self {
        let host = format!("mail.{}", self.domain);
        self.smtp(vec![(host, kind, false)])
    }
    fn tweak(mut self, f: impl Fn(&World) + 'static) -> Self {
        self.tweak = Some(Box::new(f));
        self
    }
    fn cfg(mut self, f: fn(&mut CheckConfig)) -> Self {
        self.cfg = Some(f);
        self
    }
}

fn with_policy(d: DomainBuilder, body: &str) -> DomainBuilder {
    let name = d.name().to_string();
    good(d)
        .policy(body)
        .tlsrpt(&format!("v=TLSRPTv1; rua=mailto:tlsrpt@{name}"))
}

fn p(n: &str) -> String {
    policy(n, "enforce", 1_209_600)
}

/// A good domain whose only TLS-RPT destination is `https://reports.<domain>/v1/tlsrpt`,
/// served by the testkit's HTTPS host with `behavior`.
fn rua_case(
    domain: &'static str,
    behavior: HostBehavior,
    ids: &'static [&'static str],
    verdict: Verdict,
) -> Case {
    case(
        domain,
        move |d| {
            good(d).tlsrpt(&format!(
                "v=TLSRPTv1; rua=https://reports.{domain}/v1/tlsrpt"
            ))
        },
        ids,
        verdict,
    )
    .tweak(move |w| {
        let host = format!("reports.{domain}");
        w.dns().set_a(&host, &[Ipv4Addr::LOCALHOST]);
        w.https().set(&host, behavior.clone());
    })
}

fn with_host(d: DomainBuilder, behavior: HostBehavior) -> DomainBuilder {
    good(d).policy_behavior(behavior)
}

fn cases() -> Vec<Case> {
    use Verdict::*;
    vec![
        case("perfect.test", good, &[], Pass),
        // _mta-sts TXT (RFC 8461 §3.1)
        case(
            "norecord.test",
            |d| {
                d.mx(10, "mail.norecord.test")
                    .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@norecord.test")
            },
            &["record-missing"],
            Fail,
        ),
        case(
            "tworecords.test",
            |d| good(d).sts_txt_rrs(&[&["v=STSv1; id=1;"], &["v=STSv1; id=2;"]]),
            &["record-multiple"],
            Fail,
        ),
        case(
            "unrelated.test",
            |d| good(d).sts_txt_rrs(&[&["v=STSv1; id=1;"], &["google-site-verification=x"]]),
            &["record-unrelated-txt"],
            Pass,
        ),
        case(
            "badid.test",
            |d| good(d).sts_txt("v=STSv1; id=2024-01-01;"),
            &["record-invalid-id"],
            Fail,
        ),
        case(
            "nosemicolon.test",
            |d| good(d).sts_txt("v=STSv1 id=1"),
            &["record-missing", "record-not-sts-record"],
            Fail,
        ),
        case(
            "apex.test",
            |d| {
                let n = d.name().to_string();
                DomainBuilder::new(&n)
                    .policy(&policy(&n, "enforce", 1_209_600))
                    .mx(10, "mail.apex.test")
                    .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@apex.test")
            },
            &["record-missing", "record-at-apex"],
            Fail,
        )
        .tweak(|w| w.dns().set_txt("apex.test", &[&["v=STSv1; id=1;"]])),
        case(
            "cname.test",
            |d| {
                let n = d.name().to_string();
                DomainBuilder::new(&n)
                    .policy(&policy(&n, "enforce", 1_209_600))
                    .mx(10, "mail.cname.test")
                    .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@cname.test")
            },
            &["record-cname"],
            Pass,
        )
        .tweak(|w| {
            w.dns()
                .set_cname("_mta-sts.cname.test", "cname-test._mta-sts.provider.test");
            w.dns()
                .set_txt("cname-test._mta-sts.provider.test", &[&["v=STSv1; id=7;"]]);
        }),
        case("servfail.test", good, &["record-dns-failure"], Fail).tweak(|w| {
            w.dns()
                .set_fault("_mta-sts.servfail.test", Some(DnsFault::ServFail))
        }),
        // Policy host (RFC 8461 §3.3)
        case(
            "nohost.test",
            |d| {
                d.sts_id("1")
                    .mx(10, "mail.nohost.test")
                    .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@nohost.test")
            },
            &["policy-host-dns-missing"],
            Fail,
        ),
        case(
            "expired.test",
            |d| {
                with_host(
                    d,
                    HostBehavior::policy(p("expired.test")).cert(CertKind::Expired),
                )
            },
            &["policy-host-cert-expired"],
            Fail,
        ),
        case(
            "untrusted.test",
            |d| {
                with_host(
                    d,
                    HostBehavior::policy(p("untrusted.test")).cert(CertKind::Untrusted),
                )
            },
            &["policy-host-cert-untrusted"],
            Fail,
        ),
        case(
            "selfsigned.test",
            |d| {
                with_host(
                    d,
                    HostBehavior::policy(p("selfsigned.test")).cert(CertKind::SelfSigned),
                )
            },
            &["policy-host-cert-untrusted"],
            Fail,
        ),
        case(
            "wrongname.test",
            |d| {
                with_host(
                    d,
                    HostBehavior::policy(p("wrongname.test")).cert(CertKind::WrongName),
                )
            },
            &["policy-host-cert-name-mismatch"],
            Fail,
        ),
        case(
            "redirect.test",
            |d| {
                with_host(
                    d,
                    HostBehavior::redirect(301, "https://www.redirect.test/mta-sts.txt"),
                )
            },
            &["policy-host-redirect"],
            Fail,
        ),
        case(
            "notfound.test",
            |d| with_host(d, HostBehavior::status(404)),
            &["policy-host-http-status"],
            Fail,
        ),
        case(
            "html.test",
            |d| {
                with_host(
                    d,
                    HostBehavior::policy(p("html.test")).content_type("text/html"),
                )
            },
            &["policy-host-content-type"],
            Fail,
        ),
        case(
            "notype.test",
            |d| with_host(d, HostBehavior::policy(p("notype.test")).no_content_type()),
            &["policy-host-content-type"],
            Fail,
        ),
        case(
            "huge.test",
            |d| with_host(d, HostBehavior::huge(100_000)),
            &["policy-host-too-large"],
            Fail,
        ),
        case(
            "legacytls.test",
            |d| with_host(d, HostBehavior::policy(p("legacytls.test")).legacy_tls()),
            &["policy-host-tls-version"],
            Fail,
        ),
        case(
            "hang.test",
            |d| with_host(d, HostBehavior::policy(p("hang.test")).hang_handshake()),
            &["policy-host-timeout"],
            Fail,
        ),
        case(
            "slow.test",
            |d| {
                with_host(
                    d,
                    HostBehavior::policy(p("slow.test")).delay(Duration::from_millis(3500)),
                )
            },
            &["policy-host-slow"],
            Warn,
        ),
        // Policy file (RFC 8461 §3.2)
        case(
            "badmode.test",
            |d| {
                with_policy(
                    d,
                    "version: STSv1\nmode: enforced\nmx: mail.badmode.test\nmax_age: 1209600\n",
                )
            },
            &["policy-unknown-mode"],
            Fail,
        ),
        case(
            "blankline.test",
            |d| {
                with_policy(
                    d,
                    "version: STSv1\n\nmode: enforce\nmx: mail.blankline.test\nmax_age: 1209600\n",
                )
            },
            &["policy-blank-line", "policy-not-strict"],
            Warn,
        ),
        case(
            "testing.test",
            |d| good_with(d, "testing", 1_209_600),
            &["policy-mode-testing"],
            Warn,
        ),
        case(
            "modenone.test",
            |d| good_with(d, "none", 1_209_600),
            &["policy-mode-none"],
            Pass,
        ),
        case(
            "shortage.test",
            |d| good_with(d, "enforce", 3600),
            &["policy-max-age-short"],
            Warn,
        ),
        case(
            "dayage.test",
            |d| good_with(d, "enforce", 86_400),
            &["policy-max-age-below-week"],
            Pass,
        ),
        case(
            "hugeage.test",
            |d| good_with(d, "enforce", 99_999_999),
            &["policy-max-age-above-limit"],
            Fail,
        ),
        case(
            "wild.test",
            |d| {
                with_policy(
                    d,
                    "version: STSv1\nmode: enforce\nmx: *.wild.test\nmax_age: 1209600\n",
                )
            },
            &["policy-broad-wildcard"],
            Pass,
        ),
        case(
            "unused.test",
            |d| {
                with_policy(
                    d,
                    "version: STSv1\nmode: enforce\nmx: mail.unused.test\nmx: old.unused.test\nmax_age: 1209600\n",
                )
            },
            &["policy-mx-unused"],
            Pass,
        ),
        // MX hosts (RFC 8461 §4)
        case(
            "uncovered.test",
            |d| good(d).mx(20, "backup.uncovered.test"),
            &["mx-not-in-policy"],
            Fail,
        )
        .smtp(vec![
            ("mail.uncovered.test".into(), Some(CertKind::Valid), false),
            ("backup.uncovered.test".into(), Some(CertKind::Valid), false),
        ]),
        case(
            "plain.test",
            good,
            &["mx-starttls-missing", "delivery-deferred"],
            Fail,
        )
        .mail(None),
        case(
            "refused.test",
            good,
            &["mx-starttls-failed", "delivery-deferred"],
            Fail,
        )
        .smtp(vec![(
            "mail.refused.test".into(),
            Some(CertKind::Valid),
            true,
        )]),
        case(
            "mxexpired.test",
            good,
            &["mx-cert-expired", "delivery-deferred"],
            Fail,
        )
        .mail(Some(CertKind::Expired)),
        case(
            "mxuntrusted.test",
            good,
            &["mx-cert-untrusted", "delivery-deferred"],
            Fail,
        )
        .mail(Some(CertKind::Untrusted)),
        case(
            "mxwrongname.test",
            good,
            &["mx-cert-name-mismatch", "delivery-deferred"],
            Fail,
        )
        .mail(Some(CertKind::WrongName)),
        case(
            "testingplain.test",
            |d| good_with(d, "testing", 1_209_600),
            &[
                "policy-mode-testing",
                "mx-starttls-missing",
                "enforce-would-defer",
            ],
            Warn,
        )
        .mail(None),
        // Issue #19 item 1: what `mode: enforce` would do with today's MX hosts.
        // `https:` TLS-RPT destinations (issue #19 item 2): an empty POST of
        // application/tlsrpt+gzip, judged by the answer and the certificate.
        rua_case("ruaok.test", HostBehavior::status(400), &[], Pass),
        rua_case("rua201.test", HostBehavior::status(201), &[], Pass),
        rua_case(
            "rua404.test",
            HostBehavior::status(404),
            &["tlsrpt-rua-rejects-post"],
            Warn,
        ),
        rua_case(
            "rua405.test",
            HostBehavior::status(405),
            &["tlsrpt-rua-rejects-post"],
            Warn,
        ),
        rua_case(
            "ruaredirect.test",
            HostBehavior::redirect(308, "https://elsewhere.test/tlsrpt"),
            &["tlsrpt-rua-rejects-post"],
            Warn,
        ),
        rua_case(
            "rua500.test",
            HostBehavior::status(500),
            &["tlsrpt-rua-rejects-post"],
            Warn,
        ),
        rua_case(
            "ruacert.test",
            HostBehavior::status(400).cert(CertKind::WrongName),
            &["tlsrpt-rua-cert-invalid"],
            Warn,
        ),
        rua_case(
            "ruaexpired.test",
            HostBehavior::status(404).cert(CertKind::Expired),
            &["tlsrpt-rua-cert-invalid", "tlsrpt-rua-rejects-post"],
            Warn,
        ),
        // Resolves, but nothing answers HTTPS there.
        case(
            "ruadown.test",
            |d| good(d).tlsrpt("v=TLSRPTv1; rua=https://reports.ruadown.test/tlsrpt"),
            &["tlsrpt-rua-unreachable"],
            Warn,
        )
        .tweak(|w| {
            w.dns()
                .set_a("reports.ruadown.test", &[Ipv4Addr::LOCALHOST]);
        })
        .cfg(|c| {
            if let Ok(to) = "reports.ruadown.test:443:127.0.0.1:1".parse() {
                c.connect_to.insert(0, to);
            }
        }),
        case(
            "testingwrongname.test",
            |d| good_with(d, "testing", 1_209_600),
            &[
                "policy-mode-testing",
                "mx-cert-name-mismatch",
                "enforce-would-defer",
            ],
            Warn,
        )
        .mail(Some(CertKind::WrongName)),
        case(
            "testingsome.test",
            |d| {
                with_policy(
                    d,
                    "version: STSv1\nmode: testing\nmx: mail.testingsome.test\nmx: backup.testingsome.test\nmax_age: 1209600\n",
                )
                .mx(20, "backup.testingsome.test")
            },
            &[
                "policy-mode-testing",
                "mx-cert-expired",
                "enforce-would-defer-some",
            ],
            Warn,
        )
        .smtp(vec![
            ("mail.testingsome.test".into(), Some(CertKind::Valid), false),
            (
                "backup.testingsome.test".into(),
                Some(CertKind::Expired),
                false,
            ),
        ]),
        case("closed.test", good, &["mx-connect-failed"], Warn).smtp(vec![]),
        case(
            "implicit.test",
            |d| {
                d.sts_id("1")
                    .policy(
                        &policy("implicit", "enforce", 1_209_600)
                            .replace("mail.implicit", "implicit.test"),
                    )
                    .tlsrpt("v=TLSRPTv1; rua=https://reports.implicit.test/tlsrpt")
            },
            &["mx-implicit"],
            Pass,
        )
        .smtp(vec![("implicit.test".into(), Some(CertKind::Valid), false)])
        .tweak(|w| {
            w.dns().set_a("implicit.test", &[Ipv4Addr::LOCALHOST]);
            w.dns()
                .set_a("reports.implicit.test", &[Ipv4Addr::LOCALHOST]);
            // An intake's answer to the checker's empty POST (RFC 8460 §5.4).
            w.https()
                .set("reports.implicit.test", HostBehavior::status(400));
        }),
        case(
            "nullmx.test",
            |d| {
                d.sts_id("1")
                    .policy("version: STSv1\nmode: none\nmax_age: 1209600\n")
                    .mx(0, ".")
                    .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@perfect.test")
            },
            &["mx-null", "policy-mode-none"],
            Pass,
        )
        .smtp(vec![]),
        case(
            "nomx.test",
            |d| {
                d.sts_id("1")
                    .policy(&policy("nomx.test", "enforce", 1_209_600))
                    .tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@perfect.test")
            },
            &["mx-none"],
            Fail,
        )
        .smtp(vec![]),
        case(
            "mxservfail.test",
            good,
            &["mx-dns-failure", "tlsrpt-rua-unreachable"],
            Fail,
        )
        .smtp(vec![])
        .tweak(|w| {
            w.dns()
                .set_type_fault("mxservfail.test", RecordType::MX, Some(DnsFault::ServFail))
        }),
        case(
            "noaddr.test",
            |d| {
                with_policy(
                    d,
                    "version: STSv1\nmode: enforce\nmx: mail.noaddr.test\nmx: mx.elsewhere.test\nmax_age: 1209600\n",
                )
                .mx(10, "mx.elsewhere.test")
            },
            &["mx-no-address"],
            Fail,
        ),
        // TLS-RPT (RFC 8460 §3)
        case(
            "nortp.test",
            |d| {
                let n = d.name().to_string();
                DomainBuilder::new(&n)
                    .sts_id("1")
                    .policy(&policy(&n, "enforce", 1_209_600))
                    .mx(10, "mail.nortp.test")
            },
            // a warning: the domain publishes MTA-STS (issue #12 item 15)
            &["tlsrpt-missing"],
            Warn,
        ),
        case(
            "nortpnone.test",
            |d| {
                let n = d.name().to_string();
                DomainBuilder::new(&n)
                    .sts_id("1")
                    .policy(&policy(&n, "none", 1_209_600))
                    .mx(10, "mail.nortpnone.test")
            },
            // withdrawing MTA-STS with mode none: the missing record is information only
            &["policy-mode-none", "tlsrpt-missing"],
            Pass,
        ),
        case(
            "badrpt.test",
            |d| good(d).tlsrpt("v=TLSRPTv1; rua=tlsrpt@badrpt.test"),
            &["tlsrpt-invalid-uri"],
            Fail,
        ),
        case("tworpt.test", good, &["tlsrpt-multiple"], Fail).tweak(|w| {
            w.dns().set_txt(
                "_smtp._tls.tworpt.test",
                &[
                    &["v=TLSRPTv1; rua=mailto:a@tworpt.test"],
                    &["v=TLSRPTv1; rua=mailto:b@tworpt.test"],
                ],
            )
        }),
        case(
            "rptnowhere.test",
            |d| good(d).tlsrpt("v=TLSRPTv1; rua=mailto:tlsrpt@nowhere.test"),
            &["tlsrpt-rua-unreachable"],
            Warn,
        ),
        // DANE (RFC 8461 §2)
        case("dane.test", good, &["dane-tlsa-present"], Pass).tweak(|w| {
            w.dns()
                .set_tlsa("_25._tcp.mail.dane.test", &[(3, 1, 1, &[0xab; 32])])
        }),
        // Certificate expiry warning (threshold raised above the test certificates' year).
        case(
            "expiring.test",
            good,
            &["policy-host-cert-expiring", "mx-cert-expiring"],
            Warn,
        )
        .cfg(|c| c.thresholds.cert_warn_days = 400),
    ]
}

fn run_cases(cases: Vec<Case>) {
    let mut builder = World::builder();
    let mut smtp = Vec::new();
    let mut tweaks = Vec::new();
    let mut expectations = Vec::new();
    for c in cases {
        builder = builder.domain(c.domain, c.describe);
        for (host, kind, refuse) in c.smtp {
            let mut cfg = SmtpConfig::new(&host);
            cfg.starttls = kind;
            if refuse {
                cfg = cfg.refuse_starttls();
            }
            smtp.push((host, cfg));
        }
        if let Some(t) = c.tweak {
            tweaks.push(t);
        }
        expectations.push((c.domain, c.cfg, c.ids, c.verdict));
    }
    let mut hosts = Vec::new();
    for (host, cfg) in smtp {
        builder = builder.smtp(cfg);
        hosts.push(host);
    }
    let world = builder.start();
    for t in &tweaks {
        t(&world);
    }
    let mut base = config(&world, &hosts);
    // closed.test: its MX goes to a port nobody listens on.
    if let Ok(c) = "mail.closed.test:25:127.0.0.1:1".parse() {
        base.connect_to.push(c);
    }
    // Margins of 2.5 s on either side of the slow case: an ordinary fetch of the ~40
    // concurrent worlds stays under the threshold on a machine loaded 10x (it twice took
    // over 1 s at a load of 15 on 2 cores), and slow.test's 3.5 s delay stays both above
    // the threshold and under the time-out.
    base.thresholds.slow = Duration::from_millis(2500);
    base.timeout = Duration::from_secs(6);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let failures: Vec<String> = runtime.block_on(async {
        let default = std::sync::Arc::new(checker(base.clone()));
        let mut set = tokio::task::JoinSet::new();
        for (domain, cfg, ids, verdict) in expectations {
            let checker = match cfg {
                None => default.clone(),
                Some(f) => {
                    let mut c = base.clone();
                    f(&mut c);
                    std::sync::Arc::new(checker(c))
                }
            };
            set.spawn(async move {
                let report = match checker.check(domain).await {
                    Ok(r) => r,
                    Err(e) => return Some(format!("{domain}: {e}")),
                };
                let got: BTreeSet<String> = report.ids().into_iter().collect();
                let want: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
                if got != want || report.verdict != verdict {
                    let findings: Vec<String> = report
                        .findings
                        .iter()
                        .map(|f| format!("    {} {}: {} [{}]", f.severity, f.id, f.title, f.detail))
                        .collect();
                    Some(format!(
                        "{domain}: want {want:?} {verdict}, got {got:?} {}\n{}",
                        report.verdict,
                        findings.join("\n")
                    ))
                } else {
                    None
                }
            });
        }
        let mut failures = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(f)) = r {
                failures.push(f);
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn catalogue_of_worlds() {
    let cases = cases();
    assert!(cases.len() >= 30);
    run_cases(cases);
}
