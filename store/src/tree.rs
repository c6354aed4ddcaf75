//! The index tree in memory: which pages hold which keys, and which
//! pages the next checkpoint rewrites.
//!
//! Every key lives in memory (the `index` of [`crate::State`]); the tree
//! only says how the checkpoint on the disk is cut into pages. Level 0
//! holds the leaves: a leaf node covers the keys from its own key up to
//! the next leaf's and is one page (several only when one key's records
//! do not fit one). A node of level `L` above covers the nodes of level
//! `L - 1` from its key to the next node's, and is one page listing their
//! pages. The first node of every level has the empty key, so every key
//! has a leaf; the top level has that one node only, the root.
//!
//! A set or remove marks its key's leaf dirty; a checkpoint rewrites the
//! dirty leaves (split where they grew past a page, dropped where they
//! emptied, joined to a neighbour under the same parent where both fit
//! half a page), then the nodes above the ones that changed, up to the root:
//! what it writes is proportional to what changed since the last one.

use crate::format::PageRef;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Bound::{Excluded, Included, Unbounded};

/// One node: its pages (a leaf may have none: the first leaf of an empty
/// store) and whether the next checkpoint rewrites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub pages: Vec<PageRef>,
    pub dirty: bool,
}

/// The index tree: `levels[0]` the leaves, the last level the root.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub levels: Vec<BTreeMap<String, Node>>,
    /// Leaves marked dirty since the last checkpoint.
    pub dirty_leaves: u64,
    /// Pages of the leaves.
    pub leaf_pages: u64,
}

impl Tree {
    /// The tree of an empty store: an empty leaf (no page) under `root`,
    /// a page listing nothing.
    pub fn empty(root: PageRef) -> Tree {
        let level = |pages| {
            let mut level = BTreeMap::new();
            level.insert(
                String::new(),
                Node {
                    pages,
                    dirty: false,
                },
            );
            level
        };
        Tree {
            levels: vec![level(Vec::new()), level(vec![root])],
            dirty_leaves: 0,
            leaf_pages: 0,
        }
    }

    /// The first key of the node after the one starting at `first` on
    /// `level`: the node starting at `first` covers the keys below it
    /// (`None`: all keys from `first` on).
    pub fn next_node_key(&self, level: usize, first: &str) -> Option<String> {
        self.levels[level]
            .range::<str, _>((Excluded(first), Unbounded))
            .next()
            .map(|(key, _)| key.clone())
    }

    /// Marks the leaf holding `key` for the next checkpoint.
    pub fn mark(&mut self, key: &str) {
        if let Some((_, leaf)) = self.levels[0]
            .range_mut::<str, _>((Unbounded, Included(key)))
            .next_back()
        {
            if !leaf.dirty {
                leaf.dirty = true;
                self.dirty_leaves += 1;
            }
        }
    }

    /// Marks the node of level `level` covering `key`.
    pub fn mark_at(&mut self, level: usize, key: &str) {
        if let Some((_, node)) = self.levels[level]
            .range_mut::<str, _>((Unbounded, Included(key)))
            .next_back()
        {
            node.dirty = true;
        }
    }

    /// The root page (once written).
    pub fn root(&self) -> Option<PageRef> {
        let top = self.levels.last()?;
        top.get("").and_then(|node| node.pages.first().copied())
    }

    /// Pages of the whole tree (an interior node is one page).
    pub fn pages(&self) -> u64 {
        self.leaf_pages + self.levels[1..].iter().map(|l| l.len() as u64).sum::<u64>()
    }
}
