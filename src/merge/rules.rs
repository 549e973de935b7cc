//! Resolving one field from the candidates the sources supplied for one key.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::declaration::{Rule, TieBreak};
use super::value::{compare, same};

/// One source's value for a field.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The source's name.
    pub source: &'a str,
    /// Its rank in `priority` (0 is the highest).
    pub rank: usize,
    /// The value the source gave (possibly null).
    pub value: &'a Value,
    /// The source's whole record for this key (common names), for `latest`.
    pub record: &'a Map<String, Value>,
    /// When the source first supplied this key (normalised UTC text).
    pub first_seen: &'a str,
    /// When the source's current value arrived (normalised UTC text).
    pub last_seen: &'a str,
}

/// What the rule made of a field's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A winner was chosen.
    Resolved,
    /// `quarantine` and the sources disagree: the record is held back.
    Quarantine,
    /// `fail` and the sources disagree: the run stops.
    Fail,
}

/// The result of resolving one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Index of the winning candidate.
    pub winner: usize,
    /// Whether two or more candidates carry different non-null values.
    pub disagreement: bool,
    /// What to do with the record.
    pub verdict: Verdict,
}

/// Resolves a field; `candidates` must be non-empty and sorted by rank.
pub fn resolve(rule: &Rule, candidates: &[Candidate<'_>]) -> Resolution {
    debug_assert!(!candidates.is_empty());
    debug_assert!(candidates.windows(2).all(|w| w[0].rank < w[1].rank));
    let disagreement = disagree(candidates);
    let non_null = || {
        candidates
            .iter()
            .position(|c| !c.value.is_null())
            .unwrap_or(0)
    };
    // Among equal elements, `best` keeps the earliest index, i.e. the highest priority.
    let best = |better: &dyn Fn(&Candidate<'_>, &Candidate<'_>) -> Ordering| {
        let mut w = 0;
        for (i, c) in candidates.iter().enumerate().skip(1) {
            if better(c, &candidates[w]) == Ordering::Greater {
                w = i;
            }
        }
        w
    };
    let (winner, verdict) = match rule {
        Rule::Priority => (0, Verdict::Resolved),
        Rule::Coalesce => (non_null(), Verdict::Resolved),
        Rule::Latest { field, tie_break } => {
            let w = best(&|a, b| {
                let by_field = compare(
                    a.record.get(field).unwrap_or(&Value::Null),
                    b.record.get(field).unwrap_or(&Value::Null),
                );
                match tie_break {
                    TieBreak::Priority => by_field,
                    TieBreak::Value => by_field.then_with(|| compare(a.value, b.value)),
                }
            });
            (w, Verdict::Resolved)
        }
        // Earlier first arrival is better; equal times go to priority.
        Rule::First => (
            best(&|a, b| b.first_seen.cmp(a.first_seen)),
            Verdict::Resolved,
        ),
        Rule::Last => (
            best(&|a, b| a.last_seen.cmp(b.last_seen)),
            Verdict::Resolved,
        ),
        Rule::Max | Rule::Min => {
            let max = matches!(rule, Rule::Max);
            let w = best(&|a, b| match (a.value.is_null(), b.value.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) if max => compare(a.value, b.value),
                (false, false) => compare(b.value, a.value),
            });
            (w, Verdict::Resolved)
        }
        Rule::Fail | Rule::Quarantine => {
            let verdict = match (disagreement, rule) {
                (false, _) => Verdict::Resolved,
                (true, Rule::Fail) => Verdict::Fail,
                (true, _) => Verdict::Quarantine,
            };
            (non_null(), verdict)
        }
    };
    Resolution {
        winner,
        disagreement,
        verdict,
    }
}

/// Whether two or more candidates carry different non-null values.
pub fn disagree(candidates: &[Candidate<'_>]) -> bool {
    let mut first: Option<&Value> = None;
    for c in candidates {
        if c.value.is_null() {
            continue;
        }
        match first {
            None => first = Some(c.value),
            Some(f) if !same(f, c.value) => return true,
            Some(_) => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixture {
        values: Vec<Value>,
        records: Vec<Map<String, Value>>,
        seen: Vec<(String, String)>,
    }

    /// Three sources a, b, c (ranks 0, 1, 2).
    fn fixture(values: [Value; 3], updated: [&str; 3], seen: [(&str, &str); 3]) -> Fixture {
        Fixture {
            records: updated
                .iter()
                .map(|u| {
                    let mut m = Map::new();
                    m.insert("updated_at".into(), json!(u));
                    m
                })
                .collect(),
            values: values.to_vec(),
            seen: seen
                .iter()
                .map(|(f, l)| ((*f).to_owned(), (*l).to_owned()))
                .collect(),
        }
    }

    fn run(rule: Rule, f: &Fixture) -> (String, Resolution) {
        let names = ["a", "b", "c"];
        let cands: Vec<Candidate<'_>> = (0..3)
            .map(|i| Candidate {
                source: names[i],
                rank: i,
                value: &f.values[i],
                record: &f.records[i],
                first_seen: &f.seen[i].0,
                last_seen: &f.seen[i].1,
            })
            .collect();
        let r = resolve(&rule, &cands);
        (names[r.winner].to_owned(), r)
    }

    fn standard() -> Fixture {
        fixture(
            [Value::Null, json!(7), json!(30)],
            ["2024-01-02", "2024-03-01", "2024-03-01"],
            [("t3", "t3"), ("t1", "t4"), ("t2", "t2")],
        )
    }

    #[test]
    fn every_rule_picks_its_winner() {
        let f = standard();
        assert_eq!(run(Rule::Priority, &f).0, "a");
        assert_eq!(run(Rule::Coalesce, &f).0, "b");
        assert_eq!(run(Rule::Max, &f).0, "c");
        assert_eq!(run(Rule::Min, &f).0, "b");
        assert_eq!(run(Rule::First, &f).0, "b");
        assert_eq!(run(Rule::Last, &f).0, "b");
        // b and c tie on updated_at: priority gives b, value gives c (30 > 7).
        let latest = |tie_break| Rule::Latest {
            field: "updated_at".into(),
            tie_break,
        };
        assert_eq!(run(latest(TieBreak::Priority), &f).0, "b");
        assert_eq!(run(latest(TieBreak::Value), &f).0, "c");
    }

    #[test]
    fn fail_and_quarantine_act_only_on_disagreement() {
        let f = standard();
        assert_eq!(run(Rule::Fail, &f).1.verdict, Verdict::Fail);
        assert_eq!(run(Rule::Quarantine, &f).1.verdict, Verdict::Quarantine);
        // null does not disagree; 7 and 7.0 are the same number.
        let agree = fixture(
            [Value::Null, json!(7), serde_json::from_str("7.0").unwrap()],
            ["x", "x", "x"],
            [("t", "t"), ("t", "t"), ("t", "t")],
        );
        let (w, r) = run(Rule::Fail, &agree);
        assert_eq!(
            (w.as_str(), r.verdict, r.disagreement),
            ("b", Verdict::Resolved, false)
        );
    }

    #[test]
    fn ties_go_to_priority() {
        let f = fixture(
            [json!(5), json!(5), json!(5)],
            ["d", "d", "d"],
            [("t", "t"), ("t", "t"), ("t", "t")],
        );
        for rule in [Rule::Max, Rule::Min, Rule::First, Rule::Last] {
            assert_eq!(run(rule, &f).0, "a");
        }
        assert!(!run(Rule::Max, &f).1.disagreement);
    }

    #[test]
    fn max_of_dates_and_all_null() {
        let f = fixture(
            [
                json!("2024-01-05"),
                json!("2023-12-31"),
                json!("2024-01-10"),
            ],
            ["x", "x", "x"],
            [("t", "t"), ("t", "t"), ("t", "t")],
        );
        assert_eq!(run(Rule::Max, &f).0, "c");
        assert_eq!(run(Rule::Min, &f).0, "b");
        let nulls = fixture(
            [Value::Null, Value::Null, Value::Null],
            ["x", "x", "x"],
            [("t", "t"), ("t", "t"), ("t", "t")],
        );
        assert_eq!(run(Rule::Max, &nulls).0, "a");
        assert_eq!(run(Rule::Coalesce, &nulls).0, "a");
    }
}
