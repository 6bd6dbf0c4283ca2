use std::fmt;
use std::str::FromStr;

/// Where a subscriber stands. Only `Active` subscribers receive issues;
/// `Unsubscribed`, `Bounced` and `Complained` are suppressions that no import
/// or add lifts unless the operator asks for it explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberStatus {
    /// Signed up, has not confirmed yet (double opt-in).
    Pending,
    /// Receives issues.
    Active,
    /// Asked to stop.
    Unsubscribed,
    /// The mailbox does not exist (hard bounce, or too many soft ones).
    Bounced,
    /// Marked an issue as spam.
    Complained,
}

/// A status name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a subscriber status (pending, active, unsubscribed, bounced, complained)")]
pub struct UnknownStatus(pub String);

impl SubscriberStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [SubscriberStatus; 5] = [
        Self::Pending,
        Self::Active,
        Self::Unsubscribed,
        Self::Bounced,
        Self::Complained,
    ];

    /// The lower-case name stored in the database and printed to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }

    /// Whether this status keeps the address off every list until the
    /// operator explicitly resubscribes it.
    pub fn is_suppressed(self) -> bool {
        matches!(self, Self::Unsubscribed | Self::Bounced | Self::Complained)
    }
}

impl fmt::Display for SubscriberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriberStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == t)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_name() {
        for st in SubscriberStatus::ALL {
            assert_eq!(st.as_str().parse::<SubscriberStatus>().unwrap(), st);
        }
        assert!("gone".parse::<SubscriberStatus>().is_err());
        assert!(SubscriberStatus::Bounced.is_suppressed());
        assert!(!SubscriberStatus::Pending.is_suppressed());
    }
}
