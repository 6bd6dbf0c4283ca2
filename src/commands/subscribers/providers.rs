//! The exports of the hosted providers operators move from, recognised by
//! their header row, and what each provider's subscription states become
//! here. [`detect`] and [`map_status`] are pure functions, tested by one
//! table each.
//!
//! The rule every mapping keeps: an address that unsubscribed, bounced or
//! complained at the provider never becomes active here. A state this
//! table does not know is a rejected row (named by its line), never a
//! guess.

use letterpress_core::SubscriberStatus;

/// Where a CSV file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// letterpress's own export, or any CSV with an `email` column (and
    /// perhaps `status`): statuses as `parse_status` reads them.
    Generic,
    /// EmailOctopus: `Status` is SUBSCRIBED, UNSUBSCRIBED or PENDING.
    EmailOctopus,
    /// Mailchimp's audience export: one file per state, told apart by
    /// their columns (`UNSUB_TIME` in the unsubscribed file, `CLEAN_TIME`
    /// in the cleaned one); none has a status column.
    Mailchimp(MailchimpFile),
    /// Substack: `email_disabled` true means they stopped the emails.
    Substack,
    /// Buttondown: `subscriber_type`, tags separated by `;`.
    Buttondown,
    /// beehiiv: `status` active, inactive, validating, invalid, ...
    Beehiiv,
    /// Kit (formerly ConvertKit), named as its API names a subscriber
    /// (`first_name`, `email_address`, `state`): `state` (or `status`)
    /// active, inactive, cancelled, bounced, complained.
    Kit,
    /// Keila: `Status` active, unsubscribed, unreachable; `Data` is JSON.
    Keila,
    /// Ghost's members export: `subscribed_to_emails`, `labels`.
    Ghost,
    /// listmonk: `status` enabled, disabled, blocklisted; `attributes` JSON.
    Listmonk,
}

/// Which of Mailchimp's three export files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MailchimpFile {
    /// `subscribed_members_export_…csv`
    Subscribed,
    /// `unsubscribed_members_export_…csv`
    Unsubscribed,
    /// `cleaned_members_export_…csv`: addresses that bounced.
    Cleaned,
}

impl Format {
    /// The provider's name, as `import` prints it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Format::Generic => "CSV with an email column",
            Format::EmailOctopus => "EmailOctopus export",
            Format::Mailchimp(MailchimpFile::Subscribed) => "Mailchimp export (subscribed)",
            Format::Mailchimp(MailchimpFile::Unsubscribed) => "Mailchimp export (unsubscribed)",
            Format::Mailchimp(MailchimpFile::Cleaned) => "Mailchimp export (cleaned)",
            Format::Substack => "Substack export",
            Format::Buttondown => "Buttondown export",
            Format::Beehiiv => "beehiiv export",
            Format::Kit => "Kit (ConvertKit) export",
            Format::Keila => "Keila export",
            Format::Ghost => "Ghost members export",
            Format::Listmonk => "listmonk export",
        }
    }

    /// The names (lower case) of the column whose value [`map_status`]
    /// reads; none for Mailchimp, whose files have no such column.
    pub(super) fn status_columns(self) -> &'static [&'static str] {
        match self {
            Format::Mailchimp(_) => &[],
            Format::Substack => &["email_disabled"],
            Format::Buttondown => &["subscriber_type"],
            Format::Ghost => &["subscribed_to_emails"],
            Format::Kit => &["state", "status"],
            Format::Generic => &["status", "subscription status"],
            Format::EmailOctopus | Format::Beehiiv | Format::Keila | Format::Listmonk => {
                &["status"]
            }
        }
    }
}

/// The format of a file with these (trimmed, lower-cased) column names.
/// The most specific signature wins; a file that matches none is
/// [`Format::Generic`].
pub(super) fn detect(headers: &[String]) -> Format {
    let has = |name: &str| headers.iter().any(|h| h == name);
    let any = |names: &[&str]| names.iter().any(|n| has(n));
    if has("email address")
        && any(&[
            "member_rating",
            "optin_time",
            "confirm_time",
            "leid",
            "euid",
        ])
    {
        return Format::Mailchimp(if has("clean_time") {
            MailchimpFile::Cleaned
        } else if has("unsub_time") {
            MailchimpFile::Unsubscribed
        } else {
            MailchimpFile::Subscribed
        });
    }
    if has("email_disabled") {
        return Format::Substack;
    }
    if has("subscriber_type") {
        return Format::Buttondown;
    }
    if has("subscribed_to_emails") {
        return Format::Ghost;
    }
    if has("status") && has("uuid") && has("attributes") {
        return Format::Listmonk;
    }
    if has("status") && has("data") && has("email") {
        return Format::Keila;
    }
    if has("status")
        && any(&[
            "utm_source",
            "referring_site",
            "subscription_tier",
            "subscription_premium_tier_names",
        ])
    {
        return Format::Beehiiv;
    }
    if any(&["state", "status"]) && has("email_address") && has("first_name") {
        return Format::Kit;
    }
    // EmailOctopus, with the column names of its export or of its API.
    if has("status") && any(&["email address", "email_address"]) {
        return Format::EmailOctopus;
    }
    Format::Generic
}

/// What a provider's state for one row becomes here: `raw` is the
/// trimmed value of [`Format::status_column`] (`None` when the file has
/// no such column or the cell is empty). `Ok(None)`: no state given, the
/// import's default (active, or as the row already is).
pub(super) fn map_status(
    format: Format,
    raw: Option<&str>,
) -> Result<Option<SubscriberStatus>, String> {
    use SubscriberStatus::*;
    let Some(raw) = raw else {
        return Ok(match format {
            Format::Mailchimp(MailchimpFile::Subscribed) => Some(Active),
            Format::Mailchimp(MailchimpFile::Unsubscribed) => Some(Unsubscribed),
            Format::Mailchimp(MailchimpFile::Cleaned) => Some(Bounced),
            _ => None,
        });
    };
    let value = raw.to_ascii_lowercase();
    let known = match (format, value.as_str()) {
        (Format::Generic, _) => return super::parse_status(raw).map(Some),
        (Format::Mailchimp(_), _) => return map_status(format, None),
        (Format::EmailOctopus, "subscribed") => Active,
        (Format::EmailOctopus, "unsubscribed") => Unsubscribed,
        (Format::EmailOctopus, "pending") => Pending,
        (Format::EmailOctopus, "bounced") => Bounced,
        (Format::EmailOctopus, "complained") => Complained,
        (Format::Substack | Format::Ghost, "true" | "yes" | "1") => {
            if format == Format::Substack {
                Unsubscribed
            } else {
                Active
            }
        }
        (Format::Substack | Format::Ghost, "false" | "no" | "0") => {
            if format == Format::Substack {
                Active
            } else {
                Unsubscribed
            }
        }
        // Buttondown's subscriber types (its API's `SubscriberType`):
        // paying or not, paused or past due, they are still subscribed…
        (
            Format::Buttondown,
            "regular" | "premium" | "trialed" | "unpaid" | "gifted" | "churning" | "paused"
            | "past_due",
        ) => Active,
        (Format::Buttondown, "unactivated") => Pending,
        // …removed by the newsletter, or a sign-up Buttondown took for a
        // bot's, is not mailed either.
        (Format::Buttondown, "unsubscribed" | "removed" | "spammy") => Unsubscribed,
        // Older exports: a paying reader whose subscription ended (whether
        // they still wanted the free emails is not in the file, so they are
        // not mailed until they say so), and delivery failures.
        (Format::Buttondown, "churned") => Unsubscribed,
        (Format::Buttondown, "undeliverable" | "bounced") => Bounced,
        (Format::Buttondown, "complained") => Complained,
        (Format::Beehiiv, "active") => Active,
        (Format::Beehiiv, "inactive" | "unsubscribed") => Unsubscribed,
        (Format::Beehiiv, "validating" | "pending" | "needs_attention") => Pending,
        (Format::Beehiiv, "invalid") => Bounced,
        (Format::Kit, "active") => Active,
        // Kit's "inactive" is a subscriber who never confirmed.
        (Format::Kit, "inactive") => Pending,
        (Format::Kit, "cancelled" | "canceled" | "unsubscribed") => Unsubscribed,
        (Format::Kit, "bounced") => Bounced,
        (Format::Kit, "complained") => Complained,
        (Format::Keila, "active") => Active,
        (Format::Keila, "unsubscribed") => Unsubscribed,
        (Format::Keila, "unreachable") => Bounced,
        (Format::Listmonk, "enabled") => Active,
        (Format::Listmonk, "disabled" | "blocklisted") => Unsubscribed,
        _ => {
            return Err(format!(
                "{} {:?} is not a state known for this {}; nothing is guessed",
                format.status_columns().first().unwrap_or(&"status"),
                raw,
                format.name()
            ));
        }
    };
    Ok(Some(known))
}

/// Substack's stand-ins for readers who asked to be deleted: not
/// addresses of anyone, never imported.
pub(super) fn is_placeholder(format: Format, email: &str) -> bool {
    format == Format::Substack
        && email
            .to_ascii_lowercase()
            .ends_with("@deletion-request.substack.com")
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriberStatus::*;

    fn headers(line: &str) -> Vec<String> {
        line.split(',').map(|h| h.trim().to_lowercase()).collect()
    }

    #[test]
    fn formats_are_told_apart_by_their_headers() {
        for (line, format) in [
            ("email,name", Format::Generic),
            ("email,name,tags,status", Format::Generic),
            (
                "Email address,First name,Last name,Tags,Status,Subscribed at",
                Format::EmailOctopus,
            ),
            (
                "email_address,FirstName,LastName,status,tags",
                Format::EmailOctopus,
            ),
            (
                "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,LEID,TAGS",
                Format::Mailchimp(MailchimpFile::Subscribed),
            ),
            (
                "Email Address,MEMBER_RATING,OPTIN_TIME,UNSUB_TIME,UNSUB_REASON",
                Format::Mailchimp(MailchimpFile::Unsubscribed),
            ),
            (
                "Email Address,MEMBER_RATING,OPTIN_TIME,CLEAN_TIME,CLEAN_CAMPAIGN_TITLE",
                Format::Mailchimp(MailchimpFile::Cleaned),
            ),
            (
                "email,active_subscription,expiry,plan,email_disabled,created_at",
                Format::Substack,
            ),
            (
                "email,subscriber_type,tags,notes,creation_date",
                Format::Buttondown,
            ),
            (
                "email,status,created_at,utm_source,referring_site",
                Format::Beehiiv,
            ),
            ("first_name,email_address,state,created_at", Format::Kit),
            ("first_name,email_address,status,created_at", Format::Kit),
            ("Email,First name,Last name,Data,Status", Format::Keila),
            (
                "id,email,name,note,subscribed_to_emails,labels,created_at",
                Format::Ghost,
            ),
            (
                "uuid,email,name,attributes,status,created_at,updated_at",
                Format::Listmonk,
            ),
        ] {
            assert_eq!(detect(&headers(line)), format, "{line}");
        }
    }

    /// Every provider state, and what it becomes. Nothing that left,
    /// bounced or complained there is active here.
    #[test]
    fn every_state_maps_and_none_that_left_becomes_active() {
        use Format::*;
        use MailchimpFile as M;
        let table: &[(Format, Option<&str>, Option<SubscriberStatus>)] = &[
            (Generic, None, None),
            (Generic, Some("active"), Some(Active)),
            (Generic, Some("unsubscribed"), Some(Unsubscribed)),
            (EmailOctopus, Some("SUBSCRIBED"), Some(Active)),
            (EmailOctopus, Some("UNSUBSCRIBED"), Some(Unsubscribed)),
            (EmailOctopus, Some("PENDING"), Some(Pending)),
            (Mailchimp(M::Subscribed), None, Some(Active)),
            (Mailchimp(M::Unsubscribed), None, Some(Unsubscribed)),
            (Mailchimp(M::Cleaned), None, Some(Bounced)),
            (Substack, Some("false"), Some(Active)),
            (Substack, Some("true"), Some(Unsubscribed)),
            (Substack, None, None),
            (Buttondown, Some("regular"), Some(Active)),
            (Buttondown, Some("premium"), Some(Active)),
            (Buttondown, Some("unactivated"), Some(Pending)),
            (Buttondown, Some("churned"), Some(Unsubscribed)),
            (Buttondown, Some("unsubscribed"), Some(Unsubscribed)),
            (Buttondown, Some("removed"), Some(Unsubscribed)),
            (Buttondown, Some("undeliverable"), Some(Bounced)),
            (Buttondown, Some("spammy"), Some(Unsubscribed)),
            (Buttondown, Some("paused"), Some(Active)),
            (Buttondown, Some("past_due"), Some(Active)),
            (Buttondown, Some("complained"), Some(Complained)),
            (Beehiiv, Some("active"), Some(Active)),
            (Beehiiv, Some("inactive"), Some(Unsubscribed)),
            (Beehiiv, Some("unsubscribed"), Some(Unsubscribed)),
            (Beehiiv, Some("validating"), Some(Pending)),
            (Beehiiv, Some("invalid"), Some(Bounced)),
            (Kit, Some("active"), Some(Active)),
            (Kit, Some("inactive"), Some(Pending)),
            (Kit, Some("cancelled"), Some(Unsubscribed)),
            (Kit, Some("bounced"), Some(Bounced)),
            (Kit, Some("complained"), Some(Complained)),
            (Keila, Some("active"), Some(Active)),
            (Keila, Some("unsubscribed"), Some(Unsubscribed)),
            (Keila, Some("unreachable"), Some(Bounced)),
            (Ghost, Some("true"), Some(Active)),
            (Ghost, Some("false"), Some(Unsubscribed)),
            (Listmonk, Some("enabled"), Some(Active)),
            (Listmonk, Some("disabled"), Some(Unsubscribed)),
            (Listmonk, Some("blocklisted"), Some(Unsubscribed)),
        ];
        for &(format, raw, want) in table {
            assert_eq!(map_status(format, raw), Ok(want), "{format:?} {raw:?}");
        }
        // A state no table knows is refused, for every provider.
        for format in [
            EmailOctopus,
            Substack,
            Buttondown,
            Beehiiv,
            Kit,
            Keila,
            Ghost,
            Listmonk,
        ] {
            let e = map_status(format, Some("frozen")).unwrap_err();
            assert!(e.contains("\"frozen\"") && e.contains(format.name()), "{e}");
        }
    }

    #[test]
    fn only_substack_placeholders_are_skipped() {
        assert!(is_placeholder(
            Format::Substack,
            "x1y2@deletion-request.substack.com"
        ));
        assert!(!is_placeholder(Format::Substack, "ann@substack.com"));
        assert!(!is_placeholder(
            Format::Generic,
            "x1y2@deletion-request.substack.com"
        ));
    }
}
