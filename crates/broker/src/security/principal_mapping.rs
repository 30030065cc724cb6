//! `ssl.principal.mapping.rules`: how a client certificate's subject DN becomes
//! a principal name, with Kafka's rule syntax and semantics
//! (`SslPrincipalMapper`): a comma-separated list of `DEFAULT` (the DN as it
//! is) and `RULE:pattern/replacement/[LU]` entries, tried in order; the first
//! rule whose pattern matches the whole DN gives the name (every match of the
//! pattern replaced, then lower- or upper-cased). A DN no rule matches is
//! refused: the connection is closed.
//!
//! Patterns are Rust `regex` syntax, which is Java's for what these rules use
//! (groups, classes, lazy quantifiers, anchors); backreferences and lookaround
//! are refused when the rules are read. Replacements are Java's: `$n` (as many
//! digits as name an existing group), `${name}`, `\` escapes the next character.

use regex::Regex;

/// A rule in the list: Kafka's `RULE_PATTERN`. The splitter takes one rule
/// and the comma after it; the parser checks that a rule is exactly one of
/// the forms (trailing text after `/L` or `/U` is an error, not ignored).
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";

#[derive(Debug)]
enum Rule {
    Default,
    Replace {
        /// The pattern as given, used for replacing every match.
        pattern: Regex,
        /// The same pattern anchored at both ends: does it match the whole DN?
        whole: Regex,
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl PrincipalMapper {
    /// Parses the rules; errors name the rule (Kafka: "Invalid rule: ...").
    pub fn new(rules: &str) -> Result<PrincipalMapper, String> {
        let splitter = Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(,\s*|$)")).map_err(|e| e.to_string())?;
        let parser = Regex::new(&format!(r"\A(?:{RULE_PATTERN})")).map_err(|e| e.to_string())?;
        let mut parsed = Vec::new();
        for split in splitter.captures_iter(rules.trim()) {
            let Some(rule) = split.get(1).map(|m| m.as_str()) else { continue };
            let Some(found) = parser.captures(rule) else {
                return Err(format!("Invalid rule: {rule}"));
            };
            let end = found.get(0).map_or(0, |m| m.end());
            if end != rule.len() {
                return Err(format!("Invalid rule: `{rule}`, unmatched substring: `{}`", &rule[end..]));
            }
            if found.get(1).is_some() {
                parsed.push(Rule::Default);
            } else if let (Some(pattern), Some(replacement)) = (found.get(2), found.get(4)) {
                let case = match found.get(6).map(|m| m.as_str()) {
                    Some("L") => Case::Lower,
                    Some("U") => Case::Upper,
                    _ => Case::Keep,
                };
                let compile = |source: &str| {
                    Regex::new(source).map_err(|e| format!("Invalid rule: `{rule}`: the pattern is not a regular expression Runnel reads: {e}"))
                };
                parsed.push(Rule::Replace {
                    pattern: compile(pattern.as_str())?,
                    whole: compile(&format!(r"\A(?:{})\z", pattern.as_str()))?,
                    replacement: replacement.as_str().to_string(),
                    case,
                });
            }
            // Anything else is an empty rule (",,"): ignored, as Kafka does.
        }
        Ok(PrincipalMapper { rules: parsed })
    }

    /// The principal name for a subject DN (RFC 2253 form), or why none.
    pub fn name(&self, distinguished_name: &str) -> Result<String, String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(distinguished_name.to_string()),
                Rule::Replace { pattern, whole, replacement, case } => {
                    if !whole.is_match(distinguished_name) {
                        continue;
                    }
                    let mut out = String::with_capacity(distinguished_name.len());
                    let mut last = 0;
                    for captures in pattern.captures_iter(distinguished_name) {
                        let Some(matched) = captures.get(0) else { continue };
                        out.push_str(&distinguished_name[last..matched.start()]);
                        expand_java_replacement(replacement, &captures, pattern, &mut out)?;
                        last = matched.end();
                    }
                    out.push_str(&distinguished_name[last..]);
                    return Ok(match case {
                        Case::Keep => out,
                        Case::Lower => out.to_lowercase(),
                        Case::Upper => out.to_uppercase(),
                    });
                }
            }
        }
        Err(format!("No rules apply to {distinguished_name}"))
    }
}

/// Appends `replacement` for one match as Java's `Matcher.appendReplacement`
/// would after Kafka's `escapeLiteralBackReferences`: a `$n` naming a group the
/// pattern does not have is kept as literal text (when the pattern has groups).
fn expand_java_replacement(replacement: &str, captures: &regex::Captures<'_>, pattern: &Regex, out: &mut String) -> Result<(), String> {
    let group_count = pattern.captures_len() - 1;
    let bytes = replacement.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let Some(next) = replacement[i + 1..].chars().next() else {
                    return Err("character to be escaped is missing at the end of the replacement".to_string());
                };
                out.push(next);
                i += 1 + next.len_utf8();
            }
            b'$' => {
                let rest = &replacement[i + 1..];
                if let Some(named) = rest.strip_prefix('{') {
                    let Some(close) = named.find('}') else {
                        return Err(format!("named capturing group is missing its closing brace in {replacement}"));
                    };
                    let name = &named[..close];
                    if pattern.capture_names().flatten().all(|n| n != name) {
                        return Err(format!("no group with name {{{name}}} in {replacement}"));
                    }
                    out.push_str(captures.name(name).map_or("", |m| m.as_str()));
                    i += 2 + close + 1;
                    continue;
                }
                let digits: &str = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
                if digits.is_empty() {
                    return Err(format!("illegal group reference in {replacement}"));
                }
                // Kafka's escaping first: a reference to a missing group (after
                // dropping digits down to one) is literal, unless it starts with 0.
                let mut wanted: usize = digits.parse().unwrap_or(usize::MAX);
                if group_count > 0 && !digits.starts_with('0') {
                    while wanted > group_count && wanted >= 10 {
                        wanted /= 10;
                    }
                    if wanted > group_count {
                        out.push('$');
                        i += 1;
                        continue;
                    }
                }
                // Java: the first digit, then more while the number stays a group.
                let mut group = (digits.as_bytes()[0] - b'0') as usize;
                let mut used = 1;
                for d in digits.bytes().skip(1) {
                    let longer = group * 10 + (d - b'0') as usize;
                    if longer > group_count {
                        break;
                    }
                    group = longer;
                    used += 1;
                }
                if group > group_count {
                    return Err(format!("no group {group} in the pattern {}", pattern.as_str()));
                }
                out.push_str(captures.get(group).map_or("", |m| m.as_str()));
                i += 1 + used;
            }
            _ => {
                let c = replacement[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(rules: &str) -> String {
        let mapper = PrincipalMapper::new(rules).unwrap();
        let shown: Vec<String> = mapper
            .rules
            .iter()
            .map(|r| match r {
                Rule::Default => "DEFAULT".to_string(),
                Rule::Replace { pattern, replacement, case, .. } => format!(
                    "RULE:{}/{}{}",
                    pattern.as_str(),
                    replacement,
                    match case {
                        Case::Keep => "",
                        Case::Lower => "/L",
                        Case::Upper => "/U",
                    }
                ),
            })
            .collect();
        format!("[{}]", shown.join(", "))
    }

    #[test]
    fn valid_and_invalid_rules_as_kafka_reads_them() {
        for valid in [
            "DEFAULT",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
            "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
        ] {
            PrincipalMapper::new(valid).unwrap_or_else(|e| panic!("{valid}: {e}"));
        }
        for invalid in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
            // A backreference: Java reads it, Runnel's regex engine does not; refused, not misread.
            r"RULE:^CN=(a)\1$/$1/",
        ] {
            assert!(PrincipalMapper::new(invalid).is_err(), "{invalid} was accepted");
        }
    }

    #[test]
    fn rules_split_as_kafka_splits_them() {
        assert_eq!(rules_of(""), "[]");
        assert_eq!(rules_of("  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  "), "[RULE:([A-Z]*)/$1/U, RULE:([a-z]+)/$1, DEFAULT]");
        assert_eq!(rules_of(",   , , ,      , , ,   "), "[]");
        assert_eq!(rules_of(",,RULE:x//,,,DEFAULT,,"), "[RULE:x/, DEFAULT]");
        // Escapes stay in the pattern (a regex escape) and the replacement.
        assert_eq!(rules_of(r"RULE:\**\/+/*/L,RULE:\/*\**/**/"), r"[RULE:\**\/+/*/L, RULE:\/*\**/**]");
    }

    #[test]
    fn names_as_kafka_maps_them() {
        let mapper = PrincipalMapper::new(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, \
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
             RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, \
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, \
             DEFAULT",
        )
        .unwrap();
        assert_eq!(mapper.name("CN=Duke,OU=ServiceUsers,O=Org,C=US").unwrap(), "duke");
        assert_eq!(mapper.name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US").unwrap(), "duke@sme");
        assert_eq!(mapper.name("cn=duke,ou=sme,dc=mycp,dc=com").unwrap(), "DUKE@SME");
        assert_eq!(mapper.name("cN=duke,OU=JavaSoft,O=Sun Microsystems").unwrap(), "DUKE");
        assert_eq!(mapper.name("OU=JavaSoft,O=Sun Microsystems,C=US").unwrap(), "OU=JavaSoft,O=Sun Microsystems,C=US");
    }

    #[test]
    fn a_dn_no_rule_matches_is_refused() {
        let mapper = PrincipalMapper::new("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/").unwrap();
        assert!(mapper.name("CN=x,OU=Other").unwrap_err().contains("No rules apply"));
        assert!(PrincipalMapper::new("").unwrap().name("CN=x").is_err());
    }

    #[test]
    fn escaped_commas_in_a_dn() {
        let mapper = PrincipalMapper::new(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT").unwrap();
        assert_eq!(mapper.name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz").unwrap(), r"Tkac\, Adam");
    }

    #[test]
    fn replacements_follow_java() {
        let one_group = PrincipalMapper::new("RULE:^CN=([a-z]+)$/$1-$2-$12-\\$1-${x}/").unwrap();
        // $2 and $12 name no group: literal "$2", and "$1" then "2" (Kafka's escaping).
        assert_eq!(one_group.name("CN=abc").unwrap_err(), "no group with name {x} in $1-$2-$12-\\$1-${x}");
        let named = PrincipalMapper::new("RULE:^CN=(?<who>[a-z]+)$/${who}:$1$2:$12:\\$1/").unwrap();
        assert_eq!(named.name("CN=abc").unwrap(), "abc:abc$2:abc2:$1");
        // Every match of the pattern is replaced, not only the whole.
        // ("x,x" matches whole by the second alternative; replacing finds the first, twice.)
        let every = PrincipalMapper::new("RULE:x|x,x/y/").unwrap();
        assert_eq!(every.name("x,x").unwrap(), "y,y");
    }
}
