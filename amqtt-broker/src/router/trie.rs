//! [`SubscriptionTrie`]: topic filters in a tree of levels, matched against a topic name
//! without scanning every subscription.
//!
//! Nodes live in an arena (a `Vec`) and refer to each other by index, so insertion, removal
//! (with pruning of empty branches) and matching are all iterative: no input, however many
//! levels it has, can exhaust the stack. Matching uses a caller-provided scratch stack and output
//! vector, so a publish allocates nothing once they have grown.
//!
//! Matching follows section 4.7: `+` matches exactly one level (possibly empty), `#` matches the
//! parent level and everything below, and [MQTT-4.7.2-1] filters starting with a wildcard do not
//! match topics starting with `$`. No locking here: the router wraps the trie in a lock.

use std::collections::HashMap;

use mqtt_codec::QoS;

/// Subscriptions of many subscribers `S`, each with its granted QoS.
#[derive(Debug)]
pub(crate) struct SubscriptionTrie<S> {
    nodes: Vec<Node<S>>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct Node<S> {
    /// Children by literal level.
    children: HashMap<Box<str>, u32>,
    /// The `+` child.
    plus: Option<u32>,
    /// The parent and this node's key in it, for pruning (the root's parent is itself).
    parent: u32,
    key: NodeKey,
    /// Subscribers whose filter ends at this node.
    exact: Vec<(S, QoS)>,
    /// Subscribers whose filter is this node's path followed by `/#` (or `#` at the root).
    multi: Vec<(S, QoS)>,
}

#[derive(Debug, Clone)]
enum NodeKey {
    Root,
    Level(Box<str>),
    Plus,
}

const ROOT: u32 = 0;
/// A match-stack position meaning "every level of the topic has been consumed".
const END: u32 = u32::MAX;

impl<S: Clone + PartialEq> SubscriptionTrie<S> {
    /// An empty trie.
    pub(crate) fn new() -> Self {
        SubscriptionTrie {
            nodes: vec![Node::new(ROOT, NodeKey::Root)],
            free: Vec::new(),
            len: 0,
        }
    }

    /// Number of (filter, subscriber) pairs.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no subscription at all.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `subscriber` to `filter` at `qos`, replacing its previous QoS for this filter
    /// ([MQTT-3.8.4-3]). Returns whether it replaced an existing subscription. `filter` must be a
    /// valid topic filter.
    pub(crate) fn insert(&mut self, filter: &str, subscriber: S, qos: QoS) -> bool {
        let is_multi = is_multi_filter(filter);
        let node = match filter_path(filter) {
            None => ROOT,
            Some(path) => self.walk_create(path),
        };
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return false;
        };
        let list = if is_multi { &mut n.multi } else { &mut n.exact };
        if let Some(entry) = list.iter_mut().find(|(s, _)| *s == subscriber) {
            entry.1 = qos;
            return true;
        }
        list.push((subscriber, qos));
        self.len += 1;
        false
    }

    /// Removes `subscriber` from `filter`. Returns its QoS if it was subscribed.
    pub(crate) fn remove(&mut self, filter: &str, subscriber: &S) -> Option<QoS> {
        let is_multi = is_multi_filter(filter);
        let path = filter_path(filter);
        let node = match path {
            None => ROOT,
            Some(path) => self.walk(path)?,
        };
        let n = self.nodes.get_mut(node as usize)?;
        let list = if is_multi { &mut n.multi } else { &mut n.exact };
        let pos = list.iter().position(|(s, _)| s == subscriber)?;
        let (_, qos) = list.swap_remove(pos);
        self.len -= 1;
        self.prune(node);
        Some(qos)
    }

    /// Appends every `(subscriber, granted QoS)` whose filter matches `topic` to `out`. A
    /// subscriber with several matching filters appears once per filter; the caller merges them.
    /// Returns whether it may have: the matches came from more than one filter (each filter's
    /// list holds a subscriber at most once), so a single filter's fan-out needs no merging.
    /// `stack` is scratch space, reused between calls.
    pub(crate) fn matches(
        &self,
        topic: &str,
        stack: &mut Vec<(u32, u32)>,
        out: &mut Vec<(S, QoS)>,
    ) -> bool {
        let mut lists = 0u32;
        let mut take = |out: &mut Vec<(S, QoS)>, list: &[(S, QoS)]| {
            if !list.is_empty() {
                lists += 1;
                out.extend(list.iter().cloned());
            }
        };
        stack.clear();
        let dollar = topic.starts_with('$');
        stack.push((ROOT, 0));
        while let Some((node_idx, pos)) = stack.pop() {
            let Some(node) = self.nodes.get(node_idx as usize) else {
                continue;
            };
            // [MQTT-4.7.2-1] wildcards at the first level do not match `$` topics.
            let wildcards_ok = !(dollar && node_idx == ROOT);
            if pos == END {
                take(out, &node.exact);
                // `a/#` matches `a` ([MQTT-4.7.1-2]: `#` includes the parent level).
                take(out, &node.multi);
                continue;
            }
            if wildcards_ok {
                take(out, &node.multi);
            }
            let rest = topic.get(pos as usize..).unwrap_or("");
            let (level, next) = match rest.find('/') {
                Some(i) => (&rest[..i], pos + i as u32 + 1),
                None => (rest, END),
            };
            if let Some(&child) = node.children.get(level) {
                stack.push((child, next));
            }
            if wildcards_ok {
                if let Some(plus) = node.plus {
                    stack.push((plus, next));
                }
            }
        }
        lists > 1
    }

    /// The node for the filter levels in `path`, created as needed.
    fn walk_create(&mut self, path: &str) -> u32 {
        let mut node = ROOT;
        for level in path.split('/') {
            let existing = match self.nodes.get(node as usize) {
                Some(n) if level == "+" => n.plus,
                Some(n) => n.children.get(level).copied(),
                None => None,
            };
            node = match existing {
                Some(child) => child,
                None => {
                    let key = if level == "+" {
                        NodeKey::Plus
                    } else {
                        NodeKey::Level(level.into())
                    };
                    let child = self.alloc(node, key.clone());
                    if let Some(n) = self.nodes.get_mut(node as usize) {
                        match key {
                            NodeKey::Plus => n.plus = Some(child),
                            NodeKey::Level(l) => {
                                n.children.insert(l, child);
                            }
                            NodeKey::Root => {}
                        }
                    }
                    child
                }
            };
        }
        node
    }

    /// The node for the filter levels in `path`, if it exists.
    fn walk(&self, path: &str) -> Option<u32> {
        let mut node = ROOT;
        for level in path.split('/') {
            let n = self.nodes.get(node as usize)?;
            node = if level == "+" {
                n.plus?
            } else {
                *n.children.get(level)?
            };
        }
        Some(node)
    }

    fn alloc(&mut self, parent: u32, key: NodeKey) -> u32 {
        arena_insert(&mut self.nodes, &mut self.free, Node::new(parent, key))
    }

    /// Frees `node` and its ancestors while they hold nothing.
    fn prune(&mut self, mut node: u32) {
        while node != ROOT {
            let Some(n) = self.nodes.get_mut(node as usize) else {
                return;
            };
            if !(n.exact.is_empty()
                && n.multi.is_empty()
                && n.children.is_empty()
                && n.plus.is_none())
            {
                return;
            }
            let parent = n.parent;
            let key = std::mem::replace(&mut n.key, NodeKey::Root);
            n.children = HashMap::new();
            n.exact = Vec::new();
            n.multi = Vec::new();
            self.free.push(node);
            if let Some(p) = self.nodes.get_mut(parent as usize) {
                match key {
                    NodeKey::Plus => p.plus = None,
                    NodeKey::Level(l) => {
                        p.children.remove(&l);
                    }
                    NodeKey::Root => {}
                }
            }
            node = parent;
        }
        if self.len == 0 && self.free.len() + 1 == self.nodes.len() {
            // Everything is gone: give the arena's memory back.
            self.nodes.truncate(1);
            self.nodes.shrink_to_fit();
            self.free = Vec::new();
        }
    }
}

impl<S> Node<S> {
    fn new(parent: u32, key: NodeKey) -> Self {
        Node {
            children: HashMap::new(),
            plus: None,
            parent,
            key,
            exact: Vec::new(),
            multi: Vec::new(),
        }
    }
}

fn is_multi_filter(filter: &str) -> bool {
    filter == "#" || filter.ends_with("/#")
}

/// The levels before a trailing `#` (or all levels); `None` for the filter `#` alone.
fn filter_path(filter: &str) -> Option<&str> {
    if filter == "#" {
        None
    } else {
        Some(filter.strip_suffix("/#").unwrap_or(filter))
    }
}

/// Puts `node` into a slot of `nodes` listed in `free`, or at the end, and returns its index:
/// the node arenas of the subscription trie and the retained tree reuse freed slots.
pub(crate) fn arena_insert<N>(nodes: &mut Vec<N>, free: &mut Vec<u32>, node: N) -> u32 {
    match free.pop() {
        Some(idx) => {
            if let Some(slot) = nodes.get_mut(idx as usize) {
                *slot = node;
            }
            idx
        }
        None => {
            nodes.push(node);
            (nodes.len() - 1) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matched(trie: &SubscriptionTrie<u32>, topic: &str) -> Vec<(u32, QoS)> {
        let mut out = Vec::new();
        trie.matches(topic, &mut Vec::new(), &mut out);
        out.sort_by_key(|(s, q)| (*s, *q));
        out
    }

    #[test]
    fn matches_from_one_filter_need_no_merging_and_from_two_filters_do() {
        let mut trie = SubscriptionTrie::new();
        for subscriber in 0..64u32 {
            trie.insert("bench/fanout", subscriber, QoS::AtMostOnce);
        }
        let mut out = Vec::new();
        assert!(!trie.matches("bench/fanout", &mut Vec::new(), &mut out));
        assert_eq!(out.len(), 64);
        // Subscriber 7 also matches through a wildcard: its two entries must be merged.
        trie.insert("bench/+", 7, QoS::AtLeastOnce);
        out.clear();
        assert!(trie.matches("bench/fanout", &mut Vec::new(), &mut out));
        assert_eq!(out.iter().filter(|(s, _)| *s == 7).count(), 2);
        out.clear();
        assert!(!trie.matches("bench/other", &mut Vec::new(), &mut out));
        assert_eq!(out, vec![(7, QoS::AtLeastOnce)]);
    }

    fn trie_of(filters: &[&str]) -> SubscriptionTrie<u32> {
        let mut t = SubscriptionTrie::new();
        for (i, f) in filters.iter().enumerate() {
            t.insert(f, i as u32, QoS::AtMostOnce);
        }
        t
    }

    fn ids(trie: &SubscriptionTrie<u32>, topic: &str) -> Vec<u32> {
        matched(trie, topic).into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn exact_plus_and_hash_match_per_section_4_7() {
        let t = trie_of(&[
            "sport/tennis/player1",
            "sport/+/player1",
            "sport/#",
            "#",
            "+/+",
            "+",
            "/+",
        ]);
        assert_eq!(ids(&t, "sport/tennis/player1"), vec![0, 1, 2, 3]);
        // `sport/#` matches `sport` itself; `+` matches one level.
        assert_eq!(ids(&t, "sport"), vec![2, 3, 5]);
        assert_eq!(ids(&t, "sport/"), vec![2, 3, 4]);
        assert_eq!(ids(&t, "/finance"), vec![3, 4, 6]);
        assert_eq!(ids(&t, "a/b/c"), vec![3]);
    }

    #[test]
    fn plus_matches_an_empty_level() {
        let t = trie_of(&["a/+/c"]);
        assert_eq!(ids(&t, "a//c"), vec![0]);
        assert_eq!(ids(&t, "a/c"), Vec::<u32>::new());
    }

    #[test]
    fn wildcard_at_first_level_does_not_match_sys_topics() {
        let t = trie_of(&["#", "+/broker/uptime", "$SYS/#", "$SYS/broker/+", "+"]);
        assert_eq!(ids(&t, "$SYS/broker/uptime"), vec![2, 3]);
        assert_eq!(ids(&t, "$SYS"), vec![2]);
        assert_eq!(ids(&t, "$other"), Vec::<u32>::new());
        assert_eq!(ids(&t, "x/broker/uptime"), vec![0, 1]);
    }

    #[test]
    fn insert_replaces_qos_and_remove_prunes() {
        let mut t = SubscriptionTrie::new();
        assert!(!t.insert("a/b", 1u32, QoS::AtMostOnce));
        assert!(t.insert("a/b", 1u32, QoS::ExactlyOnce));
        assert_eq!(t.len(), 1);
        assert_eq!(matched(&t, "a/b"), vec![(1, QoS::ExactlyOnce)]);
        t.insert("a/#", 2, QoS::AtLeastOnce);
        t.insert("#", 3, QoS::AtLeastOnce);
        assert_eq!(t.remove("a/b", &1), Some(QoS::ExactlyOnce));
        assert_eq!(t.remove("a/b", &1), None);
        assert_eq!(t.remove("a/#", &2), Some(QoS::AtLeastOnce));
        assert_eq!(t.remove("#", &3), Some(QoS::AtLeastOnce));
        assert!(t.is_empty());
        assert_eq!(t.nodes.len(), 1, "every branch was pruned");
    }

    #[test]
    fn the_same_subscriber_on_overlapping_filters_is_reported_per_filter() {
        let mut t = SubscriptionTrie::new();
        t.insert("o/#", 7u32, QoS::AtLeastOnce);
        t.insert("o/+", 7, QoS::AtMostOnce);
        t.insert("o/x", 7, QoS::ExactlyOnce);
        assert_eq!(
            matched(&t, "o/x"),
            vec![
                (7, QoS::AtMostOnce),
                (7, QoS::AtLeastOnce),
                (7, QoS::ExactlyOnce)
            ]
        );
    }

    #[test]
    fn very_deep_filters_do_not_exhaust_the_stack() {
        let deep = vec!["a"; 100_000].join("/");
        let mut t = SubscriptionTrie::new();
        t.insert(&deep, 1u32, QoS::AtMostOnce);
        let plus = vec!["+"; 100_000].join("/");
        t.insert(&plus, 2, QoS::AtMostOnce);
        assert_eq!(ids(&t, &deep), vec![1, 2]);
        assert_eq!(t.remove(&deep, &1), Some(QoS::AtMostOnce));
        assert_eq!(t.remove(&plus, &2), Some(QoS::AtMostOnce));
        assert!(t.is_empty());
    }

    #[test]
    fn freed_nodes_are_reused() {
        let mut t = SubscriptionTrie::new();
        t.insert("keep", 0u32, QoS::AtMostOnce);
        for i in 0..100u32 {
            t.insert(&format!("x/{i}/y"), i, QoS::AtMostOnce);
            t.remove(&format!("x/{i}/y"), &i);
        }
        assert!(t.nodes.len() <= 5, "arena grew to {}", t.nodes.len());
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just(String::new()),
            Just("$s".to_owned())
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        let flevel = prop_oneof![level(), Just("+".to_owned())];
        (proptest::collection::vec(flevel, 0..4), any::<bool>()).prop_filter_map(
            "empty",
            |(mut l, hash)| {
                if hash {
                    l.push("#".to_owned());
                }
                (!l.is_empty()).then(|| l.join("/"))
            },
        )
    }

    proptest! {
        #[test]
        fn trie_agrees_with_the_reference_matcher(filters in proptest::collection::vec(filter(), 1..12), topics in proptest::collection::vec(topic(), 1..12)) {
            let mut t = SubscriptionTrie::new();
            for (i, f) in filters.iter().enumerate() {
                t.insert(f, i as u32, QoS::AtMostOnce);
            }
            for topic in &topics {
                let mut expected: Vec<u32> = filters
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| mqtt_codec::topic::matches(f, topic))
                    .map(|(i, _)| i as u32)
                    .collect();
                expected.sort_unstable();
                let got = ids(&t, topic);
                prop_assert_eq!(got, expected, "topic {:?} filters {:?}", topic, filters);
            }
            for (i, f) in filters.iter().enumerate() {
                t.remove(f, &(i as u32));
            }
            prop_assert!(t.is_empty());
        }
    }

    /// The reference: section 4.7 read literally, level by level, with no shared code. A filter
    /// and a topic are split at every `/`; `+` stands for exactly one level (which may be
    /// empty) [MQTT-4.7.1-3]; `#` is last and stands for its parent level and any number of
    /// levels below it [MQTT-4.7.1-2]; a filter whose first character is a wildcard does not
    /// match a topic whose first character is `$` [MQTT-4.7.2-1]; any other level must be
    /// equal, character for character [MQTT-4.7.3-4].
    fn reference_matches(filter: &str, topic: &str) -> bool {
        let first = filter.chars().next();
        if topic.starts_with('$') && (first == Some('+') || first == Some('#')) {
            return false;
        }
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        for (i, level) in f.iter().enumerate() {
            if *level == "#" {
                // `t` has the levels before `#` (checked below): the parent level or more.
                return true;
            }
            let Some(topic_level) = t.get(i) else {
                return false;
            };
            if *level != "+" && level != topic_level {
                return false;
            }
        }
        f.len() == t.len()
    }

    #[test]
    fn reference_matcher_follows_the_spec_examples() {
        // The examples of section 4.7.1 and 4.7.2.
        for (filter, topic, want) in [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/tracking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/x", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("ACCOUNTS", "Accounts", false),
        ] {
            assert_eq!(
                reference_matches(filter, topic),
                want,
                "{filter} vs {topic}"
            );
        }
    }

    fn random_level() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("a".to_owned()),
            3 => Just("b".to_owned()),
            2 => Just(String::new()),
            2 => Just("$SYS".to_owned()),
            1 => Just("$x".to_owned()),
            1 => Just("a$".to_owned()),
            1 => Just("é €".to_owned()),
            1 => "[a-c$]{1,3}",
        ]
    }

    fn random_topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(random_level(), 1..6)
            .prop_map(|l| l.join("/"))
            .prop_filter("a topic name is at least one character", |t| !t.is_empty())
    }

    fn random_filter() -> impl Strategy<Value = String> {
        let level = prop_oneof![3 => random_level(), 2 => Just("+".to_owned())];
        (proptest::collection::vec(level, 0..6), any::<bool>()).prop_filter_map(
            "a filter is at least one character",
            |(mut levels, hash)| {
                if hash {
                    levels.push("#".to_owned());
                }
                let f = levels.join("/");
                (!f.is_empty()).then_some(f)
            },
        )
    }

    /// 100,000 (topic, filter) pairs or more, `$` topics included: the codec's matcher, the
    /// trie and the reference agree on every one, and removing every filter empties the trie.
    #[test]
    fn matcher_and_trie_agree_with_the_reference_on_100_000_pairs() {
        use proptest::test_runner::{Config, TestRunner};
        use std::cell::Cell;
        const FILTERS: usize = 16;
        const TOPICS: usize = 16;
        const CASES: u32 = 400;
        let pairs = Cell::new(0usize);
        let dollar_pairs = Cell::new(0usize);
        let matching_pairs = Cell::new(0usize);
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (
            proptest::collection::vec(random_filter(), FILTERS),
            proptest::collection::vec(random_topic(), TOPICS),
        );
        let result = runner.run(&strategy, |(filters, topics)| {
            let mut trie = SubscriptionTrie::new();
            for (i, f) in filters.iter().enumerate() {
                trie.insert(f, i as u32, QoS::AtMostOnce);
            }
            let (mut stack, mut out) = (Vec::new(), Vec::new());
            for topic in &topics {
                out.clear();
                trie.matches(topic, &mut stack, &mut out);
                let mut from_trie: Vec<u32> = out.iter().map(|(s, _)| *s).collect();
                // Each id has one filter: the trie reports it at most once.
                from_trie.sort_unstable();
                let mut expected = Vec::new();
                for (i, f) in filters.iter().enumerate() {
                    let want = reference_matches(f, topic);
                    let codec = mqtt_codec::topic::matches(f, topic);
                    prop_assert_eq!(
                        codec,
                        want,
                        "codec matcher: filter {:?} topic {:?}",
                        f,
                        topic
                    );
                    if want {
                        // Duplicate filters in `filters` each carry their own id.
                        expected.push(i as u32);
                        matching_pairs.set(matching_pairs.get() + 1);
                    }
                    pairs.set(pairs.get() + 1);
                    if topic.starts_with('$') {
                        dollar_pairs.set(dollar_pairs.get() + 1);
                    }
                }
                prop_assert_eq!(
                    &from_trie,
                    &expected,
                    "trie: topic {:?} filters {:?}",
                    topic,
                    &filters
                );
            }
            for (i, f) in filters.iter().enumerate() {
                prop_assert_eq!(trie.remove(f, &(i as u32)), Some(QoS::AtMostOnce));
            }
            prop_assert!(trie.is_empty());
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        assert!(pairs.get() >= 100_000, "only {} pairs checked", pairs.get());
        // The generator is not degenerate: `$` topics and matches are both well represented.
        assert!(
            dollar_pairs.get() >= 10_000,
            "{} `$` pairs",
            dollar_pairs.get()
        );
        assert!(
            matching_pairs.get() >= 5_000,
            "{} matching pairs",
            matching_pairs.get()
        );
    }
}
