//! Topic names and topic filters (section 4.7), validated once at the edge and then trusted.
//!
//! A [`TopicName`] is what a PUBLISH is sent to: no wildcards, at least one character. A
//! [`TopicFilter`] is what a SUBSCRIBE asks for: `+` takes a whole level, `#` takes a whole
//! level and must be last. [`TopicFilter::matches`] applies the matching rules, including
//! [MQTT-4.7.2-1]: a filter that starts with a wildcard does not match a topic that starts
//! with `$`. Matching is iterative, so no input can exhaust the stack.

use bytestring::ByteString;

use crate::error::DecodeError;

/// The longest string MQTT can carry: a u16 length prefix ([MQTT-4.7.3-3]).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// A validated topic name: non-empty, no `+` or `#`, no U+0000, at most 65,535 bytes.
///
/// Cheap to clone: it shares its bytes (often with the read buffer it was decoded from).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `name` as a topic name.
    pub fn new(name: impl Into<ByteString>) -> Result<TopicName, DecodeError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(TopicName(name))
    }

    /// Wraps a string the caller has already checked against every rule of [`TopicName::new`].
    #[inline]
    pub(crate) fn from_checked(name: ByteString) -> TopicName {
        debug_assert_eq!(validate_name(&name), Ok(()));
        TopicName(name)
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string behind the topic.
    pub fn as_byte_string(&self) -> &ByteString {
        &self.0
    }

    /// Whether the topic starts with `$` (such topics are not matched by leading wildcards).
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The topic's levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }
}

impl std::fmt::Debug for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for TopicName {
    type Error = DecodeError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        TopicName::new(value)
    }
}

impl TryFrom<String> for TopicName {
    type Error = DecodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TopicName::new(value)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for TopicName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TopicName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TopicName::new(s).map_err(serde::de::Error::custom)
    }
}

/// A validated topic filter: non-empty, `+` and `#` only as whole levels, `#` only last.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// Validates `filter` as a topic filter.
    pub fn new(filter: impl Into<ByteString>) -> Result<TopicFilter, DecodeError> {
        let filter = filter.into();
        validate_filter(&filter)?;
        Ok(TopicFilter(filter))
    }

    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The filter's levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.levels().any(|l| l == "+" || l == "#")
    }

    /// Whether the filter starts with a wildcard level (and so never matches `$` topics).
    pub fn starts_with_wildcard(&self) -> bool {
        self.0.starts_with('+') || self.0.starts_with('#')
    }

    /// Whether `topic` matches this filter, per section 4.7 including [MQTT-4.7.2-1].
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(self.as_str(), topic.as_str())
    }

    /// Whether every topic this filter matches is also matched by `outer`
    /// (used by access control: a filter must lie within an allowed filter).
    pub fn is_within(&self, outer: &TopicFilter) -> bool {
        let mut inner_levels = self.levels();
        let mut outer_levels = outer.levels();
        let mut first = true;
        loop {
            let (o, i) = (outer_levels.next(), inner_levels.next());
            // [MQTT-4.7.2-1] an outer filter that starts with a wildcard covers no `$` topic,
            // so it covers a literal `$…` first level of the inner filter only if it names it.
            if first && matches!(o, Some("+" | "#")) && i.is_some_and(|i| i.starts_with('$')) {
                return false;
            }
            match (o, i) {
                (Some("#"), _) => return true,
                // A leading `#` matches every non-`$` topic, i.e. one level or more, and so
                // does `+/#` (`#` also matches its parent level).
                (Some("+"), Some("#")) if first => {
                    return outer_levels.next() == Some("#") && outer_levels.next().is_none()
                }
                (Some("+"), Some(i)) if i != "#" => {}
                (Some(o), Some(i)) if o != "+" && o == i => {}
                (None, None) => return true,
                _ => return false,
            }
            first = false;
        }
    }
}

impl std::fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = DecodeError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        TopicFilter::new(value)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = DecodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TopicFilter::new(value)
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for TopicFilter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TopicFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TopicFilter::new(s).map_err(serde::de::Error::custom)
    }
}

/// Whether the topic name `topic` matches the filter `filter` (both assumed valid).
///
/// Section 4.7: `+` matches exactly one level (which may be empty), `#` matches the parent
/// level and any number of children, and [MQTT-4.7.2-1] a filter starting with a wildcard
/// does not match a topic starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn validate_common(s: &str) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(DecodeError::StringTooLong);
    }
    if s.contains('\0') {
        return Err(DecodeError::NullCharacter);
    }
    Ok(())
}

fn validate_name(s: &str) -> Result<(), DecodeError> {
    validate_common(s)?;
    if s.contains(['+', '#']) {
        return Err(DecodeError::WildcardInTopicName);
    }
    Ok(())
}

fn validate_filter(s: &str) -> Result<(), DecodeError> {
    validate_common(s)?;
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        if level == "#" {
            if levels.peek().is_some() {
                return Err(DecodeError::MultiLevelWildcardNotLast);
            }
        } else if level != "+" && level.contains(['+', '#']) {
            if level.contains('#') {
                return Err(DecodeError::MultiLevelWildcardNotLast);
            }
            return Err(DecodeError::SingleLevelWildcardNotAlone);
        }
    }
    Ok(())
}
