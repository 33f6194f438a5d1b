//! The outcome of a run: a table for people, JSON for tools.

use serde::Serialize;
use std::fmt::Write as _;

/// A case's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The host did what the specification says.
    Pass,
    /// It did not.
    Fail,
    /// The host legitimately lacks what the case needs.
    Unsupported,
}

impl Outcome {
    /// `pass`, `fail` or `unsupported`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Unsupported => "unsupported",
        }
    }
}

/// One case's result.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// The case id.
    pub id: String,
    /// The section of the specification it checks.
    pub section: String,
    /// What it checks.
    pub description: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Why, for anything but a pass (may be empty for a pass).
    pub detail: String,
}

/// Every result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The URL the cases were sent to.
    pub url: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub protocol: String,
    /// One result per case, in the order they ran.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// How many cases had `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    /// True when no case failed.
    pub fn ok(&self) -> bool {
        self.count(Outcome::Fail) == 0
    }

    /// The results that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| r.outcome == Outcome::Fail)
    }

    /// The closing line: `N passed, N failed, N unsupported`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} unsupported",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Unsupported)
        )
    }

    /// A table of case, result and detail, then the summary line.
    pub fn table(&self) -> String {
        let width = self.results.iter().map(|r| r.id.len()).max().unwrap_or(4).max(4);
        let mut out = String::new();
        let _ = writeln!(out, "{:<width$}  {:<11}  detail", "case", "result");
        for r in &self.results {
            let detail = if r.outcome == Outcome::Pass { "" } else { r.detail.as_str() };
            let _ = writeln!(out, "{:<width$}  {:<11}  {}", r.id, r.outcome.as_str(), detail).map(|_| ());
        }
        let _ = writeln!(out, "{}", self.summary());
        out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
    }

    /// The report as pretty JSON, with the counts.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            url: &'a str,
            protocol: &'a str,
            passed: usize,
            failed: usize,
            unsupported: usize,
            results: &'a [CaseResult],
        }
        let json = Json {
            url: &self.url,
            protocol: &self.protocol,
            passed: self.count(Outcome::Pass),
            failed: self.count(Outcome::Fail),
            unsupported: self.count(Outcome::Unsupported),
            results: &self.results,
        };
        serde_json::to_string_pretty(&json).expect("the report serialises")
    }
}
