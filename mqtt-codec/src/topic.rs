//! Topic names and topic filters (section 4.7), validated once at the edge and then trusted.
//!
//! A [`TopicName`] is what a PUBLISH is sent to: no wildcards, at least one character. A
//! [`TopicFilter`] is what a SUBSCRIBE asks for: `+` takes a whole level, `#` takes a whole
//! level and must be last. [`TopicFilter::matches`] applies the matching rules, including
//! [MQTT-4.7.2-1]: a filter that starts with a wildcard does not match a topic that starts
//! with `$`. Matching is iterative, so no input can exhaust the stack.

use bytestring::ByteString;

use crate::error::DecodeError;
use crate::wire::{Cursor, TopicBytes};

/// The longest string MQTT can carry: a u16 length prefix ([MQTT-4.7.3-3]).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Topic names and filters of at most this many bytes are stored inline (no allocation, no
/// reference count); longer ones share their bytes.
pub const INLINE_TOPIC_LEN: usize = 56;

/// A validated topic name: non-empty, no `+` or `#`, no U+0000, at most 65,535 bytes.
///
/// Cheap to clone: a name of up to [`INLINE_TOPIC_LEN`] bytes is stored inline (cloning it is a
/// copy of 64 bytes, decoding it touches no reference count), a longer one shares its bytes,
/// often with the read buffer it was decoded from. Equality, ordering and hashing are those of
/// the string, so a `HashMap<TopicName, _>` can be queried with a `&str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(TopicStr);

impl TopicName {
    /// Validates `name` as a topic name.
    pub fn new(name: impl Into<ByteString>) -> Result<TopicName, DecodeError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(TopicName(TopicStr::from_byte_string(name)))
    }

    /// Wraps a string the caller has already checked against every rule of [`TopicName::new`].
    #[inline]
    pub(crate) fn from_checked(name: ByteString) -> TopicName {
        debug_assert_eq!(validate_name(&name), Ok(()));
        TopicName(TopicStr::from_byte_string(name))
    }

    /// Copies a short string the caller has already checked against every rule of
    /// [`TopicName::new`]; `None` if it is longer than [`INLINE_TOPIC_LEN`]. `window` is the
    /// read buffer from the start of `name` on: when it is long enough, the copy is one
    /// fixed-size block (see [`InlineStr::from_window`]).
    #[inline]
    pub(crate) fn inline_from_checked(name: &str, window: &[u8]) -> Option<TopicName> {
        debug_assert_eq!(validate_name(name), Ok(()));
        InlineStr::from_window(name, window).map(|inline| TopicName(TopicStr::Inline(inline)))
    }

    /// The topic as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// For encoders: the block the topic is stored in when it is stored inline. Its first
    /// `as_str().len()` bytes are the topic; the rest are meaningless and must not be sent.
    #[inline]
    pub(crate) fn inline_block(&self) -> Option<&[u8; INLINE_TOPIC_LEN]> {
        match &self.0 {
            TopicStr::Inline(inline) => Some(&inline.bytes),
            TopicStr::Shared(_) => None,
        }
    }

    /// Whether the topic starts with `$` (such topics are not matched by leading wildcards).
    pub fn is_dollar(&self) -> bool {
        self.as_str().starts_with('$')
    }

    /// The topic's levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }
}

impl std::borrow::Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
        self.as_str()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for TopicName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
///
/// Stored like a [`TopicName`]: inline up to [`INLINE_TOPIC_LEN`] bytes, shared beyond.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(TopicStr);

impl TopicFilter {
    /// Validates `filter` as a topic filter.
    pub fn new(filter: impl Into<ByteString>) -> Result<TopicFilter, DecodeError> {
        let filter = filter.into();
        validate_filter(&filter)?;
        Ok(TopicFilter(TopicStr::from_byte_string(filter)))
    }

    /// A stand-in for a filter that [`TopicFilter::decode_in_place`] is about to overwrite:
    /// the empty string, which is not a valid filter, so it must never be handed out.
    #[inline]
    pub(crate) fn placeholder() -> TopicFilter {
        TopicFilter(TopicStr::Inline(InlineStr {
            len: 0,
            bytes: [0; INLINE_TOPIC_LEN],
        }))
    }

    /// Reads a `u16`-prefixed topic filter from a packet body into `slot`, checking
    /// [MQTT-1.5.3-1], [MQTT-1.5.3-2] and every filter rule. Filters are copied out of the read
    /// buffer: short ones inline, longer ones (rare, and SUBSCRIBE is not the hot path) into
    /// their own bytes. On error `slot` is unchanged.
    ///
    /// Writing in place, into a list that was allocated once, spares copying each filter
    /// through the stack: a copy of a string of any length, read back as a whole right away,
    /// waits for the copy's writes to reach the cache.
    #[inline]
    pub(crate) fn decode_in_place(
        body: &mut Cursor<'_>,
        slot: &mut TopicFilter,
    ) -> Result<(), DecodeError> {
        let raw = TopicBytes::scan(body.binary()?);
        let filter = raw.to_str()?;
        validate_len(filter)?;
        if raw.has_special() {
            check_filter_wildcards(&raw, filter.as_bytes())?;
        }
        let stored = match &mut slot.0 {
            TopicStr::Inline(inline) => inline.set(filter),
            TopicStr::Shared(_) => false,
        };
        if !stored {
            slot.0 = TopicStr::from_byte_string(ByteString::from(filter.to_owned()));
        }
        Ok(())
    }

    /// The filter as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The filter's levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.levels().any(|l| l == "+" || l == "#")
    }

    /// Whether the filter starts with a wildcard level (and so never matches `$` topics).
    pub fn starts_with_wildcard(&self) -> bool {
        self.as_str().starts_with(['+', '#'])
    }

    /// Whether `topic` matches this filter, per section 4.7 including [MQTT-4.7.2-1].
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(self.as_str(), topic.as_str())
    }

    /// Whether every topic this filter matches is also matched by `outer`
    /// (used by access control: a filter must lie within an allowed filter).
    pub fn is_within(&self, outer: &TopicFilter) -> bool {
        // `#` also matches its parent level, but the parent of a `#` at level 1 or after a
        // single empty level 1 would be the empty topic, which does not exist: there `#`
        // matches exactly what `+/#` matches.
        let inner = match self.as_str() {
            "#" => "+/#",
            "/#" => "/+/#",
            other => other,
        };
        let mut inner_levels = inner.split('/');
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
                (Some("+"), Some(i)) if i != "#" => {}
                (Some(o), Some(i)) if o != "+" && o == i => {}
                (None, None) => return true,
                _ => return false,
            }
            first = false;
        }
    }
}

impl std::borrow::Borrow<str> for TopicFilter {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
        self.as_str()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for TopicFilter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TopicFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TopicFilter::new(s).map_err(serde::de::Error::custom)
    }
}

/// The storage of a topic name or filter: inline when short, shared otherwise. Equality,
/// ordering and hashing are the string's, whichever the storage.
#[derive(Clone)]
enum TopicStr {
    Inline(InlineStr),
    Shared(ByteString),
}

impl TopicStr {
    #[inline]
    fn from_byte_string(s: ByteString) -> TopicStr {
        match InlineStr::from_window(&s, &[]) {
            Some(inline) => TopicStr::Inline(inline),
            None => TopicStr::Shared(s),
        }
    }

    #[inline]
    fn as_str(&self) -> &str {
        match self {
            TopicStr::Inline(inline) => inline.as_str(),
            TopicStr::Shared(shared) => shared,
        }
    }
}

/// A string of at most [`INLINE_TOPIC_LEN`] bytes stored in place.
///
/// Invariant: `bytes[..len]` is a valid UTF-8 string. The bytes after `len` are meaningless
/// (they may be whatever followed the string in the read buffer) and never read as text.
#[derive(Clone, Copy)]
struct InlineStr {
    len: u8,
    bytes: [u8; INLINE_TOPIC_LEN],
}

impl InlineStr {
    /// Copies `s` if it fits. `window` may be the buffer that `s` was borrowed from, starting
    /// where `s` starts: when it holds at least [`INLINE_TOPIC_LEN`] bytes, the copy is one
    /// fixed-size block instead of a call to copy `s.len()` bytes.
    #[inline]
    fn from_window(s: &str, window: &[u8]) -> Option<InlineStr> {
        let len = u8::try_from(s.len())
            .ok()
            .filter(|&len| usize::from(len) <= INLINE_TOPIC_LEN)?;
        match window.first_chunk::<INLINE_TOPIC_LEN>() {
            // Same start address: `window[..len]` is the very memory of `s`, so the invariant
            // holds for the copied prefix.
            Some(&bytes) if std::ptr::eq(window.as_ptr(), s.as_ptr()) => {
                Some(InlineStr { len, bytes })
            }
            _ => {
                let mut bytes = [0u8; INLINE_TOPIC_LEN];
                bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
                Some(InlineStr { len, bytes })
            }
        }
    }

    /// Replaces the string with `s` if it fits (`false` and unchanged if not).
    #[inline]
    fn set(&mut self, s: &str) -> bool {
        let (Some(dst), Ok(len)) = (self.bytes.get_mut(..s.len()), u8::try_from(s.len())) else {
            return false;
        };
        dst.copy_from_slice(s.as_bytes());
        self.len = len;
        true
    }

    #[inline]
    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // SAFETY: `from_window` and `set`, the only code that writes `bytes` or `len`, copy a
        // whole `&str` into `bytes[..len]` (`from_window` may read the same bytes from the
        // memory that `&str` lives in); the placeholder's `len` is 0.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl PartialEq for TopicStr {
    fn eq(&self, other: &TopicStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TopicStr {}

impl PartialOrd for TopicStr {
    fn partial_cmp(&self, other: &TopicStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TopicStr {
    fn cmp(&self, other: &TopicStr) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for TopicStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
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

fn validate_len(s: &str) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(DecodeError::StringTooLong);
    }
    Ok(())
}

/// [MQTT-4.7.3-1..3] and [MQTT-3.3.2-2]: a U+0000 anywhere wins over a wildcard anywhere.
fn validate_name(s: &str) -> Result<(), DecodeError> {
    validate_len(s)?;
    check_name_bytes(s.as_bytes())
}

/// The byte rules of a topic name: no U+0000 ([MQTT-4.7.3-2]), no wildcard ([MQTT-3.3.2-2]).
#[inline]
fn check_name_bytes(bytes: &[u8]) -> Result<(), DecodeError> {
    if TopicBytes::scan(bytes).has_special() {
        return Err(special_name_error(bytes));
    }
    Ok(())
}

/// Checks the raw topic name of a PUBLISH or a will against every rule, in one pass over its
/// bytes for the common ASCII name: non-empty ([MQTT-4.7.3-1]), no U+0000 ([MQTT-4.7.3-2]), no
/// wildcard ([MQTT-3.3.2-2]), UTF-8 ([MQTT-1.5.3-1]).
#[inline]
pub(crate) fn checked_name_str(raw: &[u8]) -> Result<&str, DecodeError> {
    if raw.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    let scan = TopicBytes::scan(raw);
    if scan.has_special() {
        return Err(special_name_error(raw));
    }
    scan.to_str()
}

/// Which rule a name holding U+0000, `+` or `#` breaks: a U+0000 anywhere wins.
#[cold]
fn special_name_error(bytes: &[u8]) -> DecodeError {
    if bytes.contains(&0) {
        DecodeError::NullCharacter
    } else {
        DecodeError::WildcardInTopicName
    }
}

/// [MQTT-4.7.3-1..3], [MQTT-4.7.1-2] and [MQTT-4.7.1-3].
fn validate_filter(s: &str) -> Result<(), DecodeError> {
    validate_len(s)?;
    let raw = TopicBytes::scan(s.as_bytes());
    if raw.has_special() {
        check_filter_wildcards(&raw, s.as_bytes())?;
    }
    Ok(())
}

/// The filter rules for a filter that holds U+0000, `+` or `#`, looking only at its wildcards
/// for the common valid filter (`sensors/+/floor/#`): every wildcard must be a whole level
/// ([MQTT-4.7.1-3]) and `#` must be last ([MQTT-4.7.1-2]); a U+0000 is refused
/// ([MQTT-4.7.3-2]). Which rule a bad filter breaks is left to [`check_filter_levels`].
#[inline]
fn check_filter_wildcards(raw: &TopicBytes<'_>, bytes: &[u8]) -> Result<(), DecodeError> {
    if raw.has_nul() {
        return check_filter_levels(bytes);
    }
    for at in memchr::memchr2_iter(b'+', b'#', bytes) {
        let starts_level = match at.checked_sub(1) {
            Some(before) => bytes.get(before) == Some(&b'/'),
            None => true,
        };
        let fine = starts_level
            && match bytes.get(at + 1) {
                None => true,
                // `#` must be last, `+` must end its level.
                Some(&b'/') => bytes.get(at) == Some(&b'+'),
                Some(_) => false,
            };
        if !fine {
            return check_filter_levels(bytes);
        }
    }
    Ok(())
}

/// The filter rules for a filter that holds U+0000, `+` or `#`: a U+0000 anywhere wins,
/// otherwise the leftmost bad level decides.
#[cold]
fn check_filter_levels(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    // A level is bad exactly when one of its wildcards is bad, so the first bad wildcard lies in
    // the leftmost bad level; that level's contents then decide which rule it breaks.
    for (at, &byte) in bytes.iter().enumerate() {
        if byte != b'+' && byte != b'#' {
            continue;
        }
        let starts_level = at == 0 || bytes.get(at - 1) == Some(&b'/');
        let ends_level = matches!(bytes.get(at + 1), None | Some(b'/'));
        let is_last = at + 1 == bytes.len();
        if starts_level && ends_level && (byte == b'+' || is_last) {
            continue;
        }
        let before = bytes.get(..at).unwrap_or_default();
        let start = before.iter().rposition(|&b| b == b'/').map_or(0, |p| p + 1);
        let after = bytes.get(at..).unwrap_or_default();
        let end = after
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |p| at + p);
        let level = bytes.get(start..end).unwrap_or_default();
        let error = level_error(
            level.len(),
            level.contains(&b'+'),
            level.contains(&b'#'),
            end == bytes.len(),
        );
        if let Some(error) = error {
            return Err(error);
        }
    }
    Ok(())
}

/// What is wrong with a filter level of `len` bytes holding `+` and/or `#`, if anything.
#[inline]
fn level_error(len: usize, plus: bool, hash: bool, last: bool) -> Option<DecodeError> {
    match (plus, hash) {
        (false, false) => None,
        (true, false) if len == 1 => None,
        (false, true) if len == 1 && last => None,
        (_, true) => Some(DecodeError::MultiLevelWildcardNotLast),
        (true, false) => Some(DecodeError::SingleLevelWildcardNotAlone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string over `alphabet` of up to `max_len` bytes.
    fn all_strings(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max_len {
            last = last
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |&b| {
                        let mut next = s.clone();
                        next.push(b);
                        next
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_wildcard_fast_path_agrees_with_the_level_by_level_rules() {
        for bytes in all_strings(b"a/+#\0", 6) {
            let raw = TopicBytes::scan(&bytes);
            let expected = if raw.has_special() {
                check_filter_levels(&bytes)
            } else {
                Ok(())
            };
            let fast = if raw.has_special() {
                check_filter_wildcards(&raw, &bytes)
            } else {
                Ok(())
            };
            assert_eq!(fast, expected, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn an_inline_copy_keeps_only_the_string_of_its_window() {
        let buffer = b"a/b\x00\x01payload that follows the topic in the read buffer, long enough";
        let name = std::str::from_utf8(&buffer[..3]).unwrap();
        let topic = TopicName::inline_from_checked(name, buffer).unwrap();
        assert_eq!(topic.as_str(), "a/b");
        assert_eq!(topic, TopicName::new("a/b").unwrap());
        // A window that is not where the string lives is not copied from.
        let elsewhere = [b'x'; 64];
        let topic = TopicName::inline_from_checked(name, &elsewhere).unwrap();
        assert_eq!(topic.as_str(), "a/b");
        let long = "l".repeat(INLINE_TOPIC_LEN + 1);
        assert_eq!(TopicName::inline_from_checked(&long, long.as_bytes()), None);
        let longest = "l".repeat(INLINE_TOPIC_LEN);
        let topic = TopicName::inline_from_checked(&longest, longest.as_bytes()).unwrap();
        assert_eq!(topic.as_str(), longest);
    }

    #[test]
    fn a_filter_decoded_in_place_replaces_the_placeholder_or_leaves_it_on_error() {
        let mut slot = TopicFilter::placeholder();
        let mut body = Cursor::new(b"\x00\x05a/+/#\x00\x02a#");
        TopicFilter::decode_in_place(&mut body, &mut slot).unwrap();
        assert_eq!(slot.as_str(), "a/+/#");
        assert_eq!(
            TopicFilter::decode_in_place(&mut body, &mut slot),
            Err(DecodeError::MultiLevelWildcardNotLast)
        );
        assert_eq!(slot.as_str(), "a/+/#");
        let long = "f".repeat(INLINE_TOPIC_LEN + 10);
        let mut field = (long.len() as u16).to_be_bytes().to_vec();
        field.extend_from_slice(long.as_bytes());
        TopicFilter::decode_in_place(&mut Cursor::new(&field), &mut slot).unwrap();
        assert_eq!(slot.as_str(), long);
    }
}
