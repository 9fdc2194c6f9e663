//! Topic names, filters and matching (section 4.7): the spec's examples, validation errors, and
//! properties against independent reference implementations.

use mqtt_codec::topic::matches;
use mqtt_codec::{DecodeError, TopicFilter, TopicName};
use proptest::prelude::*;

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn check(f: &str, t: &str, expected: bool) {
    assert_eq!(
        filter(f).matches(&name(t)),
        expected,
        "filter {f:?} topic {t:?}"
    );
    assert_eq!(matches(f, t), expected, "filter {f:?} topic {t:?}");
}

#[test]
fn multi_level_wildcard_examples_of_4_7_1_2() {
    check("sport/tennis/player1/#", "sport/tennis/player1", true);
    check(
        "sport/tennis/player1/#",
        "sport/tennis/player1/ranking",
        true,
    );
    check(
        "sport/tennis/player1/#",
        "sport/tennis/player1/score/wimbledon",
        true,
    );
    check("#", "sport/tennis", true);
    check("#", "/", true);
}

#[test]
fn sport_hash_matches_sport_itself() {
    check("sport/#", "sport", true);
    check("sport/#", "sports", false);
}

#[test]
fn single_level_wildcard_examples_of_4_7_1_3() {
    check("sport/tennis/+", "sport/tennis/player1", true);
    check("sport/tennis/+", "sport/tennis/player2", true);
    check("sport/tennis/+", "sport/tennis/player1/ranking", false);
    check("sport/+", "sport", false);
    check("+/+", "/finance", true);
    check("/+", "/finance", true);
    check("+", "/finance", false);
}

#[test]
fn plus_matches_an_empty_level() {
    check("sport/+", "sport/", true);
    check("a/+/b", "a//b", true);
    check("+", "a", true);
    check("+/+", "/", true);
}

#[test]
fn leading_wildcards_do_not_match_dollar_topics() {
    // [MQTT-4.7.2-1]
    check("#", "$SYS/broker/clients", false);
    check("+/monitor/Clients", "$SYS/monitor/Clients", false);
    check("+", "$SYS", false);
    check("+/#", "$SYS/a", false);
}

#[test]
fn filters_that_spell_out_the_dollar_level_match_dollar_topics() {
    check("$SYS/#", "$SYS/broker/uptime", true);
    check("$SYS/#", "$SYS/monitor/Clients", true);
    check("$SYS/monitor/+", "$SYS/monitor/Clients", true);
    check("$SYS/#", "$SYS", true);
}

#[test]
fn a_dollar_later_in_the_topic_is_an_ordinary_character() {
    check("#", "a/$SYS", true);
    check("+/+", "a/$b", true);
}

#[test]
fn matching_is_case_sensitive_and_exact() {
    check("ACCOUNTS", "Accounts", false);
    check("Accounts payable", "Accounts payable", true);
    check("/finance", "finance", false);
    check("finance", "finance/", false);
}

#[test]
fn valid_filters_of_4_7_1() {
    for f in [
        "#",
        "sport/tennis/#",
        "+",
        "+/tennis/#",
        "sport/+/player1",
        "/",
        "//",
        "+/+",
        "a//#",
    ] {
        assert!(TopicFilter::new(f).is_ok(), "{f:?}");
    }
}

#[test]
fn mqtt_4_7_1_2_hash_not_alone_or_not_last_is_refused() {
    for f in [
        "sport/tennis#",
        "sport/tennis/#/ranking",
        "#/a",
        "##",
        "a/#/",
        "+#",
    ] {
        assert_eq!(
            TopicFilter::new(f),
            Err(DecodeError::MultiLevelWildcardNotLast),
            "{f:?}"
        );
    }
}

#[test]
fn mqtt_4_7_1_3_plus_not_alone_in_its_level_is_refused() {
    for f in ["sport+", "+a", "a/b+/c", "++"] {
        assert_eq!(
            TopicFilter::new(f),
            Err(DecodeError::SingleLevelWildcardNotAlone),
            "{f:?}"
        );
    }
}

#[test]
fn mqtt_4_7_1_1_wildcards_in_a_topic_name_are_refused() {
    for t in ["a/+", "#", "a/#", "a+b"] {
        assert_eq!(
            TopicName::new(t),
            Err(DecodeError::WildcardInTopicName),
            "{t:?}"
        );
    }
}

#[test]
fn mqtt_4_7_3_1_empty_names_and_filters_are_refused() {
    assert_eq!(TopicName::new(""), Err(DecodeError::EmptyTopic));
    assert_eq!(TopicFilter::new(""), Err(DecodeError::EmptyTopic));
}

#[test]
fn mqtt_4_7_3_2_nul_in_names_and_filters_is_refused() {
    assert_eq!(TopicName::new("a\0b"), Err(DecodeError::NullCharacter));
    assert_eq!(TopicFilter::new("a/\0"), Err(DecodeError::NullCharacter));
}

#[test]
fn mqtt_4_7_3_3_names_over_65535_bytes_are_refused() {
    let long = "a".repeat(65_536);
    assert_eq!(
        TopicName::new(long.as_str()),
        Err(DecodeError::StringTooLong)
    );
    assert_eq!(
        TopicFilter::new(long.as_str()),
        Err(DecodeError::StringTooLong)
    );
    assert!(TopicName::new(&long[..65_535]).is_ok());
}

#[test]
fn a_very_deep_topic_matches_without_exhausting_the_stack() {
    let deep = vec!["a"; 30_000].join("/");
    assert!(matches("#", &deep));
    assert!(matches(&vec!["+"; 30_000].join("/"), &deep));
    assert!(!matches(&vec!["+"; 29_999].join("/"), &deep));
}

#[test]
fn is_within_examples_for_access_control() {
    let within = |inner: &str, outer: &str| filter(inner).is_within(&filter(outer));
    assert!(within("a/b", "a/b"));
    assert!(within("a/b", "a/+"));
    assert!(within("a/+", "a/+"));
    assert!(within("a/b/c", "a/#"));
    assert!(within("a", "a/#"));
    assert!(within("a/#", "#"));
    assert!(within("#", "+/#"));
    assert!(within("+/#", "#"));
    // The parent of `/#` would be the empty topic: `/#` matches `/`, `/a`, … like `/+/#`.
    assert!(within("/#", "+/+/#"));
    assert!(within("/#", "/+/#"));
    assert!(!within("a/#", "a/+/#"));
    assert!(within("$SYS/#", "$SYS/#"));
    // CVE-2017-7650 family: a wider filter is not within a narrower one.
    assert!(!within("a/#", "a/+/c"));
    assert!(!within("#", "a/+/c"));
    assert!(!within("a/+", "a/b"));
    assert!(!within("a/#", "a/+"));
    assert!(!within("a/#", "a/+/#"));
    // [MQTT-4.7.2-1] `#` and `+` cover no `$` topic.
    assert!(!within("$SYS/#", "#"));
    assert!(!within("$SYS/a", "+/a"));
    assert!(!within("$SYS", "+"));
}

/// An independent reference: the filter as a regular expression over the whole topic.
fn reference_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut pattern = String::from("^");
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        match *level {
            // `#` also matches the parent level, so the separator before it is optional.
            "#" if i == 0 => pattern.push_str(".*"),
            "#" => {
                pattern.truncate(pattern.len() - 1);
                pattern.push_str("(/.*)?");
            }
            "+" => pattern.push_str("[^/]*"),
            literal => pattern.push_str(&regex::escape(literal)),
        }
        if i + 1 < levels.len() {
            pattern.push('/');
        }
    }
    pattern.push('$');
    regex::Regex::new(&pattern).unwrap().is_match(topic)
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("$x".to_string()),
        Just("ab".to_string()),
    ]
}

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topics are not empty", |t| !t.is_empty())
}

fn filter_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![level(), Just("+".to_string()), Just("+".to_string())],
            1..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".to_string());
            }
            levels.join("/")
        })
        .prop_filter("filters are not empty", |f| !f.is_empty())
}

static ALL_TOPICS: std::sync::OnceLock<Vec<TopicName>> = std::sync::OnceLock::new();

/// Every topic with up to `max_levels` levels over the alphabet the strategies use.
fn all_topics(max_levels: usize) -> Vec<TopicName> {
    let alphabet = ["", "a", "b", "$x", "ab", "c"];
    let mut topics: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
    let mut last = topics.clone();
    for _ in 1..max_levels {
        last = last
            .iter()
            .flat_map(|t| alphabet.iter().map(move |l| format!("{t}/{l}")))
            .collect();
        topics.extend(last.iter().cloned());
    }
    topics
        .into_iter()
        .filter_map(|t| TopicName::new(t).ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_agrees_with_a_regex_reference(f in filter_strategy(), t in topic_strategy()) {
        prop_assert_eq!(matches(&f, &t), reference_matches(&f, &t), "filter {:?} topic {:?}", f, t);
    }

    #[test]
    fn every_generated_filter_is_valid(f in filter_strategy()) {
        prop_assert!(TopicFilter::new(f.as_str()).is_ok());
    }

    #[test]
    fn a_topic_name_used_as_a_filter_matches_exactly_itself(a in topic_strategy(), b in topic_strategy()) {
        prop_assert_eq!(matches(&a, &b), a == b);
    }

    #[test]
    fn is_within_agrees_with_brute_force(inner in filter_strategy(), outer in filter_strategy()) {
        let (inner_f, outer_f) = (filter(&inner), filter(&outer));
        // Topics as deep as the deepest filter (four levels and a `#`), over the filters'
        // literal levels plus a fresh one, are enough to show any difference between them.
        let topics = ALL_TOPICS.get_or_init(|| all_topics(5));
        let covered = topics.iter().all(|t| !inner_f.matches(t) || outer_f.matches(t));
        prop_assert_eq!(inner_f.is_within(&outer_f), covered, "inner {:?} outer {:?}", inner, outer);
    }
}

/// The filter rules written the obvious way, level by level, as a reference for the one-pass
/// validator.
fn reference_filter_check(s: &str) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::EmptyTopic);
    }
    if s.contains('\0') {
        return Err(DecodeError::NullCharacter);
    }
    let levels: Vec<&str> = s.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let last = i + 1 == levels.len();
        match *level {
            "+" => {}
            "#" if last => {}
            l if l.contains('#') => return Err(DecodeError::MultiLevelWildcardNotLast),
            l if l.contains('+') => return Err(DecodeError::SingleLevelWildcardNotAlone),
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn filter_validation_agrees_with_a_level_by_level_reference(s in "[a/+#\u{0}é]{0,12}") {
        prop_assert_eq!(TopicFilter::new(s.as_str()).map(|_| ()), reference_filter_check(&s), "{:?}", s);
    }

    #[test]
    fn name_validation_agrees_with_a_reference(s in "[a/+#\u{0}é]{0,12}") {
        let expected = if s.is_empty() {
            Err(DecodeError::EmptyTopic)
        } else if s.contains('\0') {
            Err(DecodeError::NullCharacter)
        } else if s.contains(['+', '#']) {
            Err(DecodeError::WildcardInTopicName)
        } else {
            Ok(())
        };
        prop_assert_eq!(TopicName::new(s.as_str()).map(|_| ()), expected, "{:?}", s);
    }
}
