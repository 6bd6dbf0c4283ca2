//! The field syntax shared by RFC 3464 delivery-status bodies and RFC 5965
//! feedback-report bodies: `Name: value` lines (RFC 5322 header syntax,
//! continuation lines folded in), in groups separated by blank lines.
//!
//! No crate parses these bodies, so this is written here, bounded: at most
//! [`MAX_GROUPS`] groups and [`MAX_FIELDS`] fields a group are kept, and a
//! value longer than [`MAX_VALUE`] bytes is cut.

/// Groups kept from one body: the per-message group and the recipients.
pub(crate) const MAX_GROUPS: usize = 101;
/// Fields kept from one group.
pub(crate) const MAX_FIELDS: usize = 64;
/// Bytes kept of one value.
pub(crate) const MAX_VALUE: usize = 2048;

/// One group of fields, names lowercased, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    fields: Vec<(String, String)>,
}

impl Group {
    /// The first value of the field `name` (any case), trimmed.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of the field `name` (any case), in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Splits a body into groups of fields. Lines that are neither a field nor
/// a continuation are skipped (some MTAs add prose); a continuation line
/// with no field before it too.
pub(crate) fn parse_groups(body: &str) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut current = Group::default();
    for line in body.lines() {
        if groups.len() >= MAX_GROUPS {
            break;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.fields.last_mut() {
                append(value, " ");
                append(value, line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            continue;
        }
        if current.fields.len() < MAX_FIELDS {
            let mut kept = String::new();
            append(&mut kept, value.trim());
            current.fields.push((name.to_ascii_lowercase(), kept));
        }
    }
    if !current.is_empty() && groups.len() < MAX_GROUPS {
        groups.push(current);
    }
    for group in &mut groups {
        for (_, value) in &mut group.fields {
            let trimmed = value.trim_end().len();
            value.truncate(trimmed);
        }
    }
    groups
}

/// Appends `more` to `value` without passing [`MAX_VALUE`] bytes (cut on a
/// character boundary).
fn append(value: &mut String, more: &str) {
    let room = MAX_VALUE.saturating_sub(value.len());
    if more.len() <= room {
        value.push_str(more);
    } else {
        let mut end = room;
        while !more.is_char_boundary(end) {
            end -= 1;
        }
        value.push_str(&more[..end]);
    }
}

/// The part after `type;` in a typed value (`rfc822; a@b`, `smtp; 550 …`,
/// `dns; mx.example`), trimmed; a value with no type is taken whole.
pub(crate) fn typed_value(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(['@', ' ', '<']) => rest.trim(),
        _ => value.trim(),
    }
}

/// An address out of `rfc822; <User@Example.com>`, `User@Example.com` or
/// `"Name" <user@example.com>`: the addr-spec, brackets and a trailing
/// comment removed. `None` when there is no `@`.
pub(crate) fn address(value: &str) -> Option<String> {
    let value = typed_value(value);
    let inner = match (value.find('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => &value[start + 1..end],
        _ => value.split_whitespace().next().unwrap_or(""),
    };
    let inner = inner.trim().trim_matches(|c| c == '<' || c == '>');
    (inner.contains('@') && !inner.contains(char::is_whitespace)).then(|| inner.to_string())
}

/// Every address in a header value that may hold several (`To`,
/// `Delivered-To`, …), in order.
pub(crate) fn addresses(value: &str) -> Vec<String> {
    value.split(',').filter_map(address).collect()
}

/// A Message-ID in its stored form, `<local@domain>`: brackets added when
/// missing, anything after the closing bracket dropped.
pub(crate) fn message_id(value: &str) -> Option<String> {
    let value = value.trim();
    let inner = match (value.find('<'), value.find('>')) {
        (Some(start), Some(end)) if start < end => &value[start + 1..end],
        _ => value.split_whitespace().next().unwrap_or(""),
    };
    let inner = inner.trim();
    (!inner.is_empty() && inner.len() <= 998 && !inner.contains(char::is_whitespace))
        .then(|| format!("<{inner}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_on_blank_lines_and_fold_continuations() {
        let body = "Reporting-MTA: dns; mx.example.org\r\n\
                    Arrival-Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n\
                    \r\n\
                    Final-Recipient: rfc822; a@example.com\r\n\
                    Action: failed\r\n\
                    Diagnostic-Code: smtp; 550 5.1.1 <a@example.com>:\r\n\
                    \x20   Recipient address rejected\r\n\
                    \r\n\
                    \r\n\
                    final-recipient: RFC822; b@example.com\r\n\
                    action: delayed\r\n";
        let groups = parse_groups(body);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].get("reporting-mta"), Some("dns; mx.example.org"));
        assert_eq!(
            groups[1].get("Diagnostic-Code"),
            Some("smtp; 550 5.1.1 <a@example.com>: Recipient address rejected")
        );
        assert_eq!(groups[2].get("Action"), Some("delayed"));
        assert_eq!(
            groups[2].get("Final-Recipient"),
            Some("RFC822; b@example.com")
        );
    }

    #[test]
    fn prose_and_orphan_continuations_are_skipped() {
        let groups = parse_groups("  orphan\nnot a field\nAction: failed\n");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].get("action"), Some("failed"));
        assert_eq!(groups[0].get("orphan"), None);
    }

    #[test]
    fn work_is_bounded() {
        let body = "A: b\n\n".repeat(10_000);
        assert_eq!(parse_groups(&body).len(), MAX_GROUPS);
        let long = format!("A: {}\n {}\n", "x".repeat(5000), "é".repeat(5000));
        let groups = parse_groups(&long);
        assert!(groups[0].get("a").is_some_and(|v| v.len() <= MAX_VALUE));
        let many = "A: b\n".repeat(1000);
        assert_eq!(parse_groups(&many)[0].all("a").count(), MAX_FIELDS);
    }

    #[test]
    fn addresses_come_out_of_every_usual_shape() {
        assert_eq!(
            address("rfc822; User@Example.com").as_deref(),
            Some("User@Example.com")
        );
        assert_eq!(
            address("rfc822;<a@b.example>").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(
            address("\"Ann\" <ann@x.example>").as_deref(),
            Some("ann@x.example")
        );
        assert_eq!(
            address("a@b.example (comment)").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(address("rfc822; nobody"), None);
        assert_eq!(
            addresses("a@x.example, \"B, C\" <b@x.example>"),
            vec!["a@x.example".to_string(), "b@x.example".to_string()]
        );
    }

    #[test]
    fn message_ids_take_the_stored_form() {
        assert_eq!(
            message_id(" <abc@x.example>").as_deref(),
            Some("<abc@x.example>")
        );
        assert_eq!(
            message_id("abc@x.example").as_deref(),
            Some("<abc@x.example>")
        );
        assert_eq!(
            message_id("<abc@x.example> (c)").as_deref(),
            Some("<abc@x.example>")
        );
        assert_eq!(message_id("  "), None);
    }

    #[test]
    fn typed_values_drop_the_type() {
        assert_eq!(typed_value("smtp; 550 no such user"), "550 no such user");
        assert_eq!(typed_value("X-Postfix; host said"), "host said");
        assert_eq!(
            typed_value("550 5.1.1 user unknown; sorry"),
            "550 5.1.1 user unknown; sorry"
        );
    }
}
