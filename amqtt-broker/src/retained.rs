//! [`RetainedTree`]: retained messages indexed by topic level, so that a SUBSCRIBE looks at the
//! branches its filter can match instead of every retained topic.
//!
//! One node per topic level, in an arena (a `Vec`) whose nodes refer to each other by index:
//! insertion, removal (pruning empty branches) and matching are iterative, so no topic, however
//! many levels it has, can exhaust the stack, and dropping the tree is flat. A literal filter
//! level follows one child, `+` every child of its node, `#` the whole subtree below its node
//! (and the node itself, [MQTT-4.7.1-2]); a filter starting with a wildcard skips the first
//! levels that start with `$` ([MQTT-4.7.2-1]). No locking here: the store wraps it in a lock.

use std::collections::HashMap;

use mqtt_codec::session::Message;

/// Retained messages by topic, one per topic.
#[derive(Debug)]
pub(crate) struct RetainedTree {
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Number of retained messages.
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, u32>,
    /// The parent and this node's level in it, for pruning (the root's parent is itself).
    parent: u32,
    key: Box<str>,
    /// The retained message of the topic ending at this node.
    message: Option<Message>,
}

const ROOT: u32 = 0;

impl Default for RetainedTree {
    fn default() -> Self {
        RetainedTree::new()
    }
}

impl RetainedTree {
    /// An empty tree.
    pub(crate) fn new() -> RetainedTree {
        RetainedTree {
            nodes: vec![Node::default()],
            free: Vec::new(),
            len: 0,
        }
    }

    /// Number of retained messages.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `message` as the retained message of its topic; returns the one it replaced.
    pub(crate) fn insert(&mut self, message: Message) -> Option<Message> {
        let mut node = ROOT;
        for level in message.topic.as_str().split('/') {
            let existing = self
                .nodes
                .get(node as usize)
                .and_then(|n| n.children.get(level).copied());
            node = match existing {
                Some(child) => child,
                None => {
                    let child = self.alloc(node, level);
                    if let Some(n) = self.nodes.get_mut(node as usize) {
                        n.children.insert(level.into(), child);
                    }
                    child
                }
            };
        }
        let slot = &mut self.nodes.get_mut(node as usize)?.message;
        let old = slot.replace(message);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the retained message of `topic`, if any.
    pub(crate) fn remove(&mut self, topic: &str) -> Option<Message> {
        let node = self.find(topic)?;
        let old = self.nodes.get_mut(node as usize)?.message.take()?;
        self.len -= 1;
        self.prune(node);
        Some(old)
    }

    /// The retained message of exactly `topic`.
    pub(crate) fn get(&self, topic: &str) -> Option<&Message> {
        self.nodes.get(self.find(topic)? as usize)?.message.as_ref()
    }

    /// Appends (clones of) every retained message whose topic matches the valid topic filter
    /// `filter` to `out`. Returns how many nodes were looked at (for tests and benchmarks).
    pub(crate) fn matching(&self, filter: &str, out: &mut Vec<Message>) -> usize {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut visited = 0;
        // (node, index of the next filter level to match at it)
        let mut stack = vec![(ROOT, 0usize)];
        let mut subtree = Vec::new();
        while let Some((idx, depth)) = stack.pop() {
            let Some(node) = self.nodes.get(idx as usize) else {
                continue;
            };
            visited += 1;
            let Some(&level) = levels.get(depth) else {
                out.extend(node.message.iter().cloned());
                continue;
            };
            // [MQTT-4.7.2-1] a wildcard as the filter's first level skips `$` topics.
            let skip_dollar = |key: &str| idx == ROOT && key.starts_with('$');
            match level {
                "#" => {
                    // `a/#` matches `a` itself ([MQTT-4.7.1-2]) and everything below.
                    out.extend(node.message.iter().cloned());
                    subtree.extend(
                        node.children
                            .iter()
                            .filter(|(key, _)| !skip_dollar(key))
                            .map(|(_, &child)| child),
                    );
                    while let Some(idx) = subtree.pop() {
                        let Some(node) = self.nodes.get(idx as usize) else {
                            continue;
                        };
                        visited += 1;
                        out.extend(node.message.iter().cloned());
                        subtree.extend(node.children.values().copied());
                    }
                }
                "+" => stack.extend(
                    node.children
                        .iter()
                        .filter(|(key, _)| !skip_dollar(key))
                        .map(|(_, &child)| (child, depth + 1)),
                ),
                literal => {
                    if let Some(&child) = node.children.get(literal) {
                        stack.push((child, depth + 1));
                    }
                }
            }
        }
        visited
    }

    /// The node of `topic`, if it exists.
    fn find(&self, topic: &str) -> Option<u32> {
        let mut node = ROOT;
        for level in topic.split('/') {
            node = *self.nodes.get(node as usize)?.children.get(level)?;
        }
        Some(node)
    }

    fn alloc(&mut self, parent: u32, key: &str) -> u32 {
        let node = Node {
            children: HashMap::new(),
            parent,
            key: key.into(),
            message: None,
        };
        crate::router::trie::arena_insert(&mut self.nodes, &mut self.free, node)
    }

    /// Frees `node` and its ancestors while they hold nothing.
    fn prune(&mut self, mut node: u32) {
        while node != ROOT {
            let Some(n) = self.nodes.get_mut(node as usize) else {
                return;
            };
            if n.message.is_some() || !n.children.is_empty() {
                return;
            }
            let parent = n.parent;
            let key = std::mem::take(&mut n.key);
            n.children = HashMap::new();
            self.free.push(node);
            if let Some(p) = self.nodes.get_mut(parent as usize) {
                p.children.remove(&key);
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_codec::{QoS, TopicName};
    use proptest::prelude::*;

    fn msg(topic: &str, payload: &str) -> Message {
        Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos: QoS::AtMostOnce,
            retain: true,
        }
    }

    fn topics(tree: &RetainedTree, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.matching(filter, &mut out);
        let mut topics: Vec<String> = out.iter().map(|m| m.topic.to_string()).collect();
        topics.sort();
        topics
    }

    #[test]
    fn filters_match_per_section_4_7() {
        let mut tree = RetainedTree::new();
        for t in [
            "sport",
            "sport/tennis",
            "sport/tennis/p1",
            "/x",
            "$SYS/up",
            "a//b",
        ] {
            tree.insert(msg(t, t));
        }
        assert_eq!(
            topics(&tree, "sport/#"),
            ["sport", "sport/tennis", "sport/tennis/p1"]
        );
        assert_eq!(topics(&tree, "sport/+"), ["sport/tennis"]);
        assert_eq!(topics(&tree, "+/+"), ["/x", "sport/tennis"]);
        assert_eq!(topics(&tree, "a/+/b"), ["a//b"]);
        assert_eq!(topics(&tree, "sport/tennis"), ["sport/tennis"]);
        // [MQTT-4.7.2-1]: wildcards at the first level do not reach `$` topics.
        assert!(!topics(&tree, "#").contains(&"$SYS/up".to_owned()));
        assert!(topics(&tree, "+/up").is_empty());
        assert_eq!(topics(&tree, "$SYS/#"), ["$SYS/up"]);
        assert_eq!(topics(&tree, "$SYS/+"), ["$SYS/up"]);
    }

    #[test]
    fn a_filter_visits_only_the_branches_it_can_match() {
        let mut tree = RetainedTree::new();
        for i in 0..10_000 {
            tree.insert(msg(&format!("bulk/{i}/value"), "x"));
        }
        tree.insert(msg("rare/1/value", "y"));
        let mut out = Vec::new();
        let visited = tree.matching("rare/+/value", &mut out);
        assert_eq!(out.len(), 1);
        assert!(visited <= 4, "visited {visited} nodes for one match");
        out.clear();
        let visited = tree.matching("+/1/#", &mut out);
        assert_eq!(out.len(), 2);
        assert!(visited < 20, "visited {visited} nodes");
    }

    #[test]
    fn removal_prunes_and_replacing_keeps_one_message_per_topic() {
        let mut tree = RetainedTree::new();
        assert!(tree.insert(msg("a/b/c", "1")).is_none());
        assert!(tree.insert(msg("a/b/c", "2")).is_some());
        tree.insert(msg("a", "3"));
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.get("a/b/c").map(|m| &m.payload[..]), Some(&b"2"[..]));
        assert!(tree.remove("a/b").is_none());
        assert!(tree.remove("a/b/c").is_some());
        assert_eq!(tree.nodes.len() - tree.free.len(), 2, "root and `a` remain");
        assert!(tree.remove("a").is_some());
        assert_eq!(tree.len(), 0);
        assert_eq!(tree.nodes.len(), 1, "every branch was pruned");
    }

    #[test]
    fn very_deep_topics_do_not_exhaust_the_stack() {
        let deep = vec!["d"; 30_000].join("/");
        let mut tree = RetainedTree::new();
        tree.insert(msg(&deep, "x"));
        assert_eq!(topics(&tree, "#").len(), 1);
        assert_eq!(topics(&tree, &vec!["+"; 30_000].join("/")).len(), 1);
        let mut tree2 = RetainedTree::new();
        tree2.insert(msg(&deep, "x"));
        drop(tree2);
        assert!(tree.remove(&deep).is_some());
        assert_eq!(tree.nodes.len(), 1);
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just(String::new()),
            Just("$s".to_owned()),
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        // A topic name is at least one character long ([MQTT-4.7.3-1]).
        proptest::collection::vec(level(), 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("empty topic", |t| !t.is_empty())
    }

    fn filter() -> impl Strategy<Value = String> {
        let flevel = prop_oneof![level(), Just("+".to_owned())];
        (proptest::collection::vec(flevel, 0..5), any::<bool>()).prop_filter_map(
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
        /// The tree finds exactly what a scan of every retained topic with the codec's matcher
        /// finds, through any sequence of stores and clears.
        #[test]
        fn tree_agrees_with_a_naive_scan(
            ops in proptest::collection::vec((topic(), any::<bool>(), 0u8..4), 1..40),
            filters in proptest::collection::vec(filter(), 1..12),
        ) {
            let mut tree = RetainedTree::new();
            let mut naive: HashMap<String, String> = HashMap::new();
            for (topic, clear, payload) in &ops {
                if *clear {
                    prop_assert_eq!(tree.remove(topic).is_some(), naive.remove(topic).is_some());
                } else {
                    tree.insert(msg(topic, &payload.to_string()));
                    naive.insert(topic.clone(), payload.to_string());
                }
            }
            prop_assert_eq!(tree.len(), naive.len());
            for filter in &filters {
                let mut out = Vec::new();
                tree.matching(filter, &mut out);
                let mut got: Vec<(String, String)> = out
                    .iter()
                    .map(|m| (m.topic.to_string(), String::from_utf8_lossy(&m.payload).into_owned()))
                    .collect();
                got.sort();
                let mut expected: Vec<(String, String)> = naive
                    .iter()
                    .filter(|(t, _)| mqtt_codec::topic::matches(filter, t))
                    .map(|(t, p)| (t.clone(), p.clone()))
                    .collect();
                expected.sort();
                prop_assert_eq!(got, expected, "filter {:?}", filter);
            }
            for topic in naive.keys() {
                prop_assert!(tree.remove(topic).is_some());
            }
            prop_assert_eq!(tree.nodes.len(), 1, "every branch was pruned");
        }
    }
}
