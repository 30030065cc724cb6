//! The cases: each is a named sequence of requests (setup, then probes whose
//! answers are compared). Adding one is a `case("api.what", |ctx| { ... })`
//! line in the file of the API it probes.

use anyhow::Result;

use crate::ctx::Ctx;

mod api_versions;
mod cluster;
mod configs;
mod groups;
mod produce_fetch;
mod topics;
mod transactions;

pub struct Case {
    pub name: String,
    pub run: Box<dyn Fn(&mut Ctx) -> Result<()>>,
    /// A broker setting (KEY=VALUE) both brokers must run with: such a case
    /// runs only in a pass started with `--broker-setting KEY=VALUE`.
    pub requires: Option<String>,
}

pub fn case(name: impl Into<String>, run: impl Fn(&mut Ctx) -> Result<()> + 'static) -> Case {
    Case { name: name.into(), run: Box::new(run), requires: None }
}

/// A case for brokers started with `setting` (KEY=VALUE) on both sides.
pub fn case_with_setting(name: impl Into<String>, setting: &str, run: impl Fn(&mut Ctx) -> Result<()> + 'static) -> Case {
    Case { name: name.into(), run: Box::new(run), requires: Some(setting.to_string()) }
}

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(api_versions::cases());
    cases.extend(topics::cases());
    cases.extend(produce_fetch::cases());
    cases.extend(configs::cases());
    cases.extend(groups::cases());
    cases.extend(transactions::cases());
    cases.extend(cluster::cases());
    cases
}
