//! The cases: each is a named sequence of requests (setup, then probes whose
//! answers are compared). Adding one is a `case("api.what", |ctx| { ... })`
//! line in the file of the API it probes.

use anyhow::Result;

use crate::ctx::Ctx;

mod api_versions;
mod configs;
mod groups;
mod produce_fetch;
mod topics;
mod transactions;

pub struct Case {
    pub name: String,
    pub run: Box<dyn Fn(&mut Ctx) -> Result<()>>,
}

pub fn case(name: impl Into<String>, run: impl Fn(&mut Ctx) -> Result<()> + 'static) -> Case {
    Case { name: name.into(), run: Box::new(run) }
}

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(api_versions::cases());
    cases.extend(topics::cases());
    cases.extend(produce_fetch::cases());
    cases.extend(configs::cases());
    cases.extend(groups::cases());
    cases.extend(transactions::cases());
    cases
}
