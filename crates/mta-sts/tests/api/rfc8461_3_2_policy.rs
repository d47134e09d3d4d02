//! RFC 8461 §3.2: the policy file. One test per normative rule; docs/design.md §2 decides which
//! deviations are errors (policy unusable) and which are warnings (usable, `breaks_abnf`).

use mta_sts::policy::{self, MAX_AGE_LIMIT, PolicyLint, policy_strings};
use mta_sts::{Mode, Policy};

const BASE: &str = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n";

fn lint(body: &str) -> PolicyLint {
    policy::lint(body.as_bytes())
}

fn codes(body: &str) -> Vec<&'static str> {
    lint(body).diagnostics.iter().map(|d| d.code).collect()
}

fn valid(body: &str) -> Policy {
    let l = lint(body);
    l.policy
        .unwrap_or_else(|| panic!("{body:?} should be valid: {:?}", l.diagnostics))
}

/// Invalid, with `code` among the errors.
fn invalid(body: &str, code: &str) {
    let l = lint(body);
    assert!(l.policy.is_none(), "{body:?} should be invalid");
    assert!(
        l.diagnostics.iter().any(|d| d.is_error() && d.code == code),
        "{body:?}: expected error {code}, got {:?}",
        l.diagnostics
    );
}

/// Usable, not strictly valid, with warning `code`.
fn tolerated(body: &str, code: &str) -> Policy {
    let l = lint(body);
    assert!(!l.is_strict_valid(), "{body:?} breaks the ABNF");
    assert!(
        l.diagnostics
            .iter()
            .any(|d| !d.is_error() && d.breaks_abnf && d.code == code),
        "{body:?}: expected warning {code}, got {:?}",
        l.diagnostics
    );
    l.policy
        .unwrap_or_else(|| panic!("{body:?} should be usable"))
}

#[test]
fn rfc8461_3_2_minimal_policy_is_strictly_valid() {
    let l = lint(BASE);
    assert!(l.is_strict_valid(), "{:?}", l.diagnostics);
    assert!(l.diagnostics.is_empty());
    let p = l.policy.unwrap();
    assert_eq!((p.mode, p.max_age, p.mx.len()), (Mode::Enforce, 86400, 1));
}

// STS-3.2-d and erratum 6253: LF or CRLF, mixed, optional final terminator
#[test]
fn rfc8461_3_2_lf_crlf_and_mixed_line_ends() {
    assert_eq!(valid(BASE), valid(&BASE.replace('\n', "\r\n")));
    assert!(lint("version: STSv1\r\nmode: enforce\nmx: m.example\r\nmax_age: 1").is_strict_valid());
    assert!(lint(BASE.trim_end()).is_strict_valid());
}

// edge case 1: only one terminator after the last field; blank lines break the ABNF
#[test]
fn rfc8461_3_2_blank_lines_break_the_grammar() {
    tolerated(
        "version: STSv1\n\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n",
        "blank-line",
    );
    tolerated(&format!("{BASE}\n"), "blank-line");
    tolerated(&format!("{BASE}\r\n\r\n"), "blank-line");
    tolerated(&format!("{BASE} \t\n"), "blank-line");
    let l = lint("version: STSv1\n\nmode: enforce\nmx: m.example\nmax_age: 1");
    assert_eq!(l.diagnostics[0].line, Some(2));
}

#[test]
fn rfc8461_3_2_bare_cr_is_not_a_terminator() {
    // "version: STSv1\rmode: enforce" is one line whose version value has a CR in it
    invalid(
        "version: STSv1\rmode: enforce\rmx: m.example\rmax_age: 1",
        "invalid-version",
    );
    tolerated(
        &BASE.replace("max_age: 86400\n", "max_age: 86400\r\r\n"),
        "stray-cr",
    );
}

// edge case 2: no leading whitespace, *WSP after ":", trailing WSP allowed
#[test]
fn rfc8461_3_2_whitespace_rules() {
    let p = valid(
        "version:STSv1\r\nmode:\tenforce\r\nmx:  \t\t *.example.com\nmax_age: 1\nmore:ext e  ns ion",
    );
    assert_eq!(p.extensions, vec![("more".into(), "ext e  ns ion".into())]);
    assert!(
        lint("version: STSv1\nmode: enforce\t\nmx: *.example.com \nmax_age: 0 \n")
            .is_strict_valid()
    );
    let p = tolerated(
        "  version: STSv1\n  mode: enforce\n  mx: m.example\n  max_age: 3600\n",
        "leading-whitespace",
    );
    assert_eq!(p.mode, Mode::Enforce);
    // whitespace before the colon makes the key invalid
    invalid(
        "version: STSv1\nmode : enforce\nmx: m.example\nmax_age: 1",
        "missing-mode",
    );
}

// edge case 3: keys are case-sensitive; `Mode:` is an unknown field
#[test]
fn rfc8461_3_2_keys_are_case_sensitive() {
    let l = lint("version: STSv1\nMode: enforce\nmx: m.example\nmax_age: 86400");
    assert!(l.policy.is_none());
    let missing = l
        .diagnostics
        .iter()
        .find(|d| d.code == "missing-mode")
        .unwrap();
    assert!(
        missing.message.contains("did you mean line 2"),
        "{}",
        missing.message
    );
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.code == "misspelled-key" && d.line == Some(2))
    );
    invalid(
        "Version: STSv1\nmode: enforce\nmx: m.example\nmax_age: 86400",
        "missing-version",
    );
    invalid(
        "version: STSv1\nmode: enforce\nMX: m.example\nmax_age: 86400",
        "missing-mx",
    );
    invalid(
        "version: STSv1\nmode: enforce\nmx: m.example\nMax_Age: 86400",
        "missing-max-age",
    );
    invalid(
        "version: STSv1\nmode: enforce\nmx: m.example\nmax-age: 86400",
        "missing-max-age",
    );
}

// edge case 4 / STS-3.2-e: values are case-sensitive
#[test]
fn rfc8461_3_2_version_is_exactly_stsv1() {
    invalid(
        "version: STSv2\nmode: enforce\nmx: m.example\nmax_age: 86400",
        "invalid-version",
    );
    invalid(
        "version: stsv1\nmode: enforce\nmx: m.example\nmax_age: 86400",
        "invalid-version",
    );
    invalid("version: STSv10\nmode: none\nmax_age: 0", "invalid-version");
}

#[test]
fn rfc8461_3_2_mode_is_enforce_testing_or_none() {
    assert_eq!(
        valid("version: STSv1\nmode: testing\nmx: m.example\nmax_age: 1").mode,
        Mode::Testing
    );
    assert_eq!(
        valid("version: STSv1\nmode: none\nmax_age: 1").mode,
        Mode::None
    );
    for bad in [
        "Enforce",
        "ENFORCE",
        "enforced",
        "doubt",
        "invalid_value",
        "report",
    ] {
        invalid(
            &format!("version: STSv1\nmode: {bad}\nmx: m.example\nmax_age: 86400"),
            "unknown-mode",
        );
    }
    let l = lint("version: STSv1\nmode: Enforce\nmx: m.example\nmax_age: 86400");
    assert!(
        l.diagnostics[0]
            .message
            .contains("did you mean `mode: enforce`"),
        "{}",
        l.diagnostics[0].message
    );
}

// STS-3.2-f, edge case 12, erratum 7282: max_age 1*10DIGIT, clamp above 31557600
#[test]
fn rfc8461_3_2_max_age_grammar_and_limit() {
    assert_eq!(valid("version: STSv1\nmode: none\nmax_age: 0").max_age, 0);
    assert_eq!(
        valid("version: STSv1\nmode: none\nmax_age: 0000086400").max_age,
        86400
    );
    assert_eq!(
        valid(&format!(
            "version: STSv1\nmode: none\nmax_age: {MAX_AGE_LIMIT}"
        ))
        .effective_max_age(),
        MAX_AGE_LIMIT
    );
    let l = lint("version: STSv1\nmode: enforce\nmx: m.example\nmax_age: 31557601");
    assert!(l.is_strict_valid(), "grammatical");
    assert_eq!(l.diagnostics[0].code, "max-age-above-limit");
    let p = l.policy.unwrap();
    assert_eq!(
        (p.max_age, p.effective_max_age()),
        (31_557_601, MAX_AGE_LIMIT)
    );
    assert_eq!(
        valid("version: STSv1\nmode: none\nmax_age: 9999999999").effective_max_age(),
        MAX_AGE_LIMIT
    );
    for bad in [
        "01234567890",
        "-1",
        "+1",
        "1.5",
        "1e6",
        "86400s",
        "1d",
        "xxx",
        "a",
        "",
        "86 400",
        "٣",
    ] {
        invalid(
            &format!("version: STSv1\nmode: none\nmax_age: {bad}"),
            "invalid-max-age",
        );
    }
}

// STS-3.2-i/j, edge case 13: mx = ["*."] Domain
#[test]
fn rfc8461_3_2_mx_values() {
    let p = valid(
        "version: STSv1\nmode: enforce\nmx: mx0.example.org\nmx: *.example.org\nmax_age: 8600",
    );
    assert_eq!(
        p.mx.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["mx0.example.org", "*.example.org"]
    );
    for bad in [
        "",
        "mail.example.com.",
        ".example.com",
        "*",
        "*.*.example",
        "**.example",
        "**.example-",
        "test.example-",
        "mx*.example",
        "a.*.example",
        "mail_1.example.com",
        "mail.example.com:25",
        "[192.0.2.1]",
        "https://mx.example.com",
        "-mx.example.com",
    ] {
        invalid(
            &format!("version: STSv1\nmode: enforce\nmx: {bad}\nmax_age: 86400"),
            "invalid-mx",
        );
    }
    // upper case is allowed (matching is case-insensitive)
    assert!(
        lint("version: STSv1\nmode: enforce\nmx: MAIL.Example.COM\nmax_age: 1").is_strict_valid()
    );
}

// STS-3.2-k: each MX MUST have its own mx: line
#[test]
fn rfc8461_3_2_one_mx_per_line() {
    invalid(
        "version: STSv1\nmode: enforce\nmx: a.example.com, b.example.com\nmax_age: 86400",
        "invalid-mx",
    );
    invalid(
        "version: STSv1\nmode: enforce\nmx: a.example.com b.example.com\nmax_age: 86400",
        "invalid-mx",
    );
    let l = lint("version: STSv1\nmode: enforce\nmx: a.example.com,b.example.com\nmax_age: 86400");
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.message.contains("own `mx:` line"))
    );
}

// STS-3.2-l: A-labels MUST be used; U-labels are converted with a warning (docs/design.md §2)
#[test]
fn rfc8461_3_2_mx_must_be_a_labels() {
    let p = tolerated(
        "version: STSv1\nmode: enforce\nmx: *.מייל.קום\nmx: MAIL.מייל.קום\nmax_age: 604800\n",
        "mx-u-label",
    );
    assert_eq!(p.mx[0].to_string(), "*.xn--eebajf.xn--9dbq2a");
    assert_eq!(p.mx[1].to_string(), "mail.xn--eebajf.xn--9dbq2a");
    assert!(
        lint("version: STSv1\nmode: enforce\nmx: xn--aca-6ma.com\nmax_age: 1").is_strict_valid()
    );
}

#[test]
fn rfc8461_3_2_mx_ip_address_is_grammatical_but_warned() {
    let l = lint("version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmax_age: 86400");
    assert!(l.is_strict_valid());
    assert_eq!(l.diagnostics[0].code, "mx-ip-address");
}

// STS-3.2-m: unknown fields are accepted and ignored when syntactically valid
#[test]
fn rfc8461_3_2_unknown_fields_are_ignored() {
    let p = valid(&format!(
        "{BASE}x-report: safe-value\ncomment: café au lait\nfuture_field: x\n"
    ));
    assert_eq!(p.extensions.len(), 3);
    assert!(lint(&format!("{BASE}{}: 1\n", "a".repeat(32))).is_strict_valid());
    assert!(lint(&format!("{BASE}note: a:b:c\n")).is_strict_valid());
}

// edge case 10: invalid extension lines break the ABNF but leave the meaning clear
#[test]
fn rfc8461_3_2_invalid_extension_lines_are_deviations() {
    for line in [
        "_comment: ok",
        "-comment: ok",
        ".comment: ok",
        "bad name: ok",
        "x+comment: ok",
        "café: ok",
        "comment:",
        "comment: ok\u{0}bad",
        "comment: ok\tbad",
        "comment: ok\u{7f}bad",
        "garbage",
        "mode enforce please",
    ] {
        let body = format!("{BASE}{line}\n");
        let l = lint(&body);
        assert!(l.is_valid(), "{line:?}");
        assert!(!l.is_strict_valid(), "{line:?}");
    }
    assert!(!lint(&format!("{BASE}{}: 1\n", "a".repeat(33))).is_strict_valid());
    tolerated(&format!("# MTA-STS policy\n{BASE}"), "comment");
}

// STS-3.2-n: duplicates of non-repeated fields: first wins (SHALL)
#[test]
fn rfc8461_3_2_duplicate_fields_first_wins() {
    let p = valid(
        "version: STSv1\nmode: testing\nmode: enforce\nmx: m.example\nmax_age: 60\nmax_age: 86400\nversion: STSv2",
    );
    assert_eq!((p.mode, p.max_age), (Mode::Testing, 60));
    assert_eq!(
        codes("version: STSv1\nmode: testing\nmode: enforce\nmx: m.example\nmax_age: 60"),
        ["duplicate-field"]
    );
    // a later invalid duplicate is ignored too
    assert_eq!(
        valid("version: STSv1\nmode: testing\nmode: bogus\nmx: m.example\nmax_age: 60").mode,
        Mode::Testing
    );
    // the first one decides even when it is invalid
    invalid(
        "version: STSv1\nmode: bogus\nmode: testing\nmx: m.example\nmax_age: 60",
        "unknown-mode",
    );
}

#[test]
fn rfc8461_3_2_mx_repeats_and_every_line_counts() {
    let p = valid(
        "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\nmx: mx.backup-example.com\nmax_age: 1296000\n",
    );
    assert_eq!(p.mx.len(), 3);
    let l = lint("version: STSv1\nmode: testing\nmx: a.example\nmx: A.example\nmax_age: 1");
    assert_eq!(l.policy.unwrap().mx.len(), 1);
    assert_eq!(l.diagnostics[0].code, "duplicate-mx");
}

// STS-3.2-o: version, mode, max_age required once
#[test]
fn rfc8461_3_2_required_fields() {
    invalid(
        "mode: enforce\nmx: m.example\nmax_age: 86400",
        "missing-version",
    );
    invalid(
        "version: STSv1\nmx: m.example\nmax_age: 86400",
        "missing-mode",
    );
    invalid(
        "version: STSv1\nmode: enforce\nmx: m.example",
        "missing-max-age",
    );
    invalid("garbage", "missing-version");
}

// STS-3.2-p: mx required unless mode is none
#[test]
fn rfc8461_3_2_mx_required_unless_none() {
    invalid(
        "version: STSv1\nmode: enforce\nmax_age: 86400",
        "missing-mx",
    );
    invalid(
        "version: STSv1\nmode: testing\nmax_age: 86400",
        "missing-mx",
    );
    assert!(lint("version: STSv1\nmode: none\nmax_age: 86400").is_strict_valid());
    assert_eq!(
        valid("version: STSv1\nmode: none\nmx: m.example\nmax_age: 86400")
            .mx
            .len(),
        1
    );
}

// edge case 7: order is free
#[test]
fn rfc8461_3_2_field_order_is_free() {
    assert!(lint("max_age: 1\nmx: m.example\nmode: enforce\nversion: STSv1").is_strict_valid());
}

// edge case 11: no BOM, no comments, not empty, UTF-8
#[test]
fn rfc8461_3_2_bom_empty_and_encoding() {
    tolerated(&format!("\u{feff}{BASE}"), "bom");
    invalid("", "empty-body");
    let l = policy::lint(b"version: STSv1\nmode: enforce\nmx: m\xe9il.example\nmax_age: 1");
    assert!(l.policy.is_none());
    assert_eq!(
        (l.diagnostics[0].code, l.diagnostics[0].line),
        ("not-utf8", Some(3))
    );
}

#[test]
fn canonical_display_is_crlf_in_fixed_order() {
    let p = valid(
        "max_age: 0086400\nmx: B.example\nmode: testing\nx: y\nmx: *.a.example\nversion: STSv1\n",
    );
    assert_eq!(
        p.to_string(),
        "version: STSv1\r\nmode: testing\r\nmx: b.example\r\nmx: *.a.example\r\nmax_age: 86400\r\nx: y\r\n"
    );
    assert!(lint(&p.to_string()).is_strict_valid());
}

#[test]
fn policy_strings_are_the_lines() {
    assert_eq!(
        policy_strings("version: STSv1\r\nmode: none\r\nmax_age: 1\r\n"),
        ["version: STSv1", "mode: none", "max_age: 1"]
    );
    assert_eq!(policy_strings("a\nb"), ["a", "b"]);
    assert!(policy_strings("").is_empty());
}

#[test]
fn every_diagnostic_has_a_fix_and_a_line_where_it_applies() {
    let body = "\u{feff}  version: STSv2\n\n# c\nmode: Enforce\nmx: a.example.com.\nmax_age: 1d\nMX: x\n_x: 1\n";
    let l = lint(body);
    assert!(l.diagnostics.len() >= 8, "{:?}", l.diagnostics);
    for d in &l.diagnostics {
        assert!(d.line.is_some(), "{d}");
        assert!(d.message.contains(':'), "a fix follows a colon: {d}");
    }
}

/// The message of the first `invalid-mx` error of a policy whose only mx line is `value`.
fn mx_message(value: &str) -> String {
    let l = lint(&format!(
        "version: STSv1\nmode: enforce\nmx: {value}\nmax_age: 86400\n"
    ));
    assert!(l.policy.is_none(), "{value:?} should be invalid");
    l.diagnostics
        .iter()
        .find(|d| d.code == "invalid-mx")
        .map(|d| d.message.clone())
        .unwrap_or_else(|| panic!("{value:?}: no invalid-mx in {:?}", l.diagnostics))
}

// STS-3.2-k (issue #12 item 14): "lists several hosts" only for values that list hosts; a
// comment, a pasted MX priority or plain words get their own explanation.
#[test]
fn rfc8461_3_2_invalid_mx_messages_name_the_real_mistake() {
    for list in [
        "a.example.com, b.example.com",
        "a.example.com;b.example.com",
    ] {
        assert!(mx_message(list).contains("several hosts"), "{list}");
    }
    // real-world policies (shared/corpus/realworld policies 007, 051, 012, 074)
    let m = mx_message("*.mail.protection.outlook.com      # 3. If you have secondary");
    assert!(!m.contains("several hosts"), "{m}");
    assert!(
        m.contains("comment") && m.contains("`mx: *.mail.protection.outlook.com`"),
        "{m}"
    );
    let m = mx_message("mx1.your_domain.tld      # 2. Add your primary");
    assert!(!m.contains("several hosts") && m.contains("comment"), "{m}");
    let m = mx_message("Priority 5: ALT1.ASPMX.L.GOOGLE.COM");
    assert!(!m.contains("several hosts"), "{m}");
    assert!(
        m.contains("priority") && m.contains("`mx: alt1.aspmx.l.google.com`"),
        "{m}"
    );
    let m = mx_message("not a hostname!");
    assert!(!m.contains("several hosts"), "{m}");
    assert!(m.contains("is not a host name"), "{m}");
}

// issue #12 item 14: the wildcard advice for a leading dot is only given when it is valid.
#[test]
fn rfc8461_3_2_leading_dot_advice_is_itself_valid() {
    let m = mx_message(".example.com");
    assert!(m.contains("`*.example.com`"), "{m}");
    let m = mx_message("..--");
    assert!(
        !m.contains("*..--"),
        "advice must not be an invalid pattern: {m}"
    );
    assert!(m.contains("empty label"), "{m}");
}

// issue #12 item 14: a key one edit away from a known one gets a did-you-mean, on the line
// and in the missing-field error.
#[test]
fn rfc8461_3_2_one_typo_keys_get_did_you_mean() {
    for (line, known, missing) in [
        ("nmx: mx0.example.com", "mx", "missing-mx"),
        ("max-age: 86400", "max_age", "missing-max-age"),
        ("mod: enforce", "mode", "missing-mode"),
        ("verison: STSv1", "version", "missing-version"),
    ] {
        let mut fields = [
            "version: STSv1",
            "mode: enforce",
            "mx: mx0.example.com",
            "max_age: 86400",
        ];
        let at = fields
            .iter()
            .position(|f| f.starts_with(&format!("{known}:")))
            .unwrap_or_default();
        fields[at] = line;
        let l = lint(&fields.join("\n"));
        assert!(l.policy.is_none(), "{line}");
        let advice = l
            .diagnostics
            .iter()
            .find(|d| d.code == "misspelled-key")
            .unwrap_or_else(|| panic!("{line}: {:?}", l.diagnostics));
        assert!(!advice.is_error() && !advice.breaks_abnf, "{advice:?}");
        assert!(
            advice.message.contains(&format!("`{known}:`")),
            "{advice:?}"
        );
        let error = l
            .diagnostics
            .iter()
            .find(|d| d.code == missing)
            .unwrap_or_else(|| panic!("{line}: {:?}", l.diagnostics));
        assert!(
            error
                .message
                .contains(&format!("did you mean line {}", at + 1)),
            "{error:?}"
        );
    }
    // two edits away, or one character: no guess, a plain extension
    for key in ["nmxx", "x", "foo_ext", "modes_of"] {
        let l = lint(&format!("{BASE}{key}: value\n"));
        assert!(l.is_strict_valid(), "{key}: {:?}", l.diagnostics);
        assert!(
            l.diagnostics.iter().all(|d| d.code != "misspelled-key"),
            "{key}"
        );
    }
    // a valid extension that happens to be one edit away stays an extension
    let l = lint(&format!("{BASE}more: text\n"));
    let p = l.policy.as_ref().expect("valid");
    assert_eq!(p.extensions, vec![("more".into(), "text".into())]);
}
