//! DNS tunnels: the iodine names of the netrack corpus under an allowed parent, and its
//! ordinary names, through the resolver's real screening (parser, policy, detector).

use portcullis_egress::{Access, Plan};

use super::egress;

fn names(csv: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    csv.lines()
        .skip(1)
        .filter_map(|l| l.split_once(',').map(|(_, n)| n.trim_end_matches('.').to_owned()))
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// A query for `name` (labels as UTF-8 bytes); `None` when a label does not fit DNS.
fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut m = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = label.as_bytes();
        if bytes.len() > 63 {
            return None;
        }
        m.push(bytes.len() as u8);
        m.extend_from_slice(bytes);
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    Some(m)
}

fn refused(plan: &Option<Plan>) -> bool {
    matches!(plan, Some(Plan::Answer(r)) if r.len() > 3 && r[3] & 0x0f == 5)
}

/// (refused, screened, not encodable)
fn rate(policy: &str, names: &[String]) -> (usize, usize, usize) {
    let (eg, _) = egress(policy, Access::default(), None, true);
    let (mut refused_n, mut screened, mut skipped) = (0, 0, 0);
    for (i, name) in names.iter().enumerate() {
        let Some(q) = query(i as u16, name, 1) else {
            skipped += 1;
            continue;
        };
        screened += 1;
        if refused(&eg.screen(&q, true)) {
            refused_n += 1;
        }
    }
    (refused_n, screened, skipped)
}

#[test]
fn at_least_99_percent_of_iodine_names_are_refused_under_an_allowed_parent() {
    let iodine = names(include_str!("../data/dns_tunnel_netrack/names_iodine.csv"));
    assert!(iodine.len() > 6000, "{}", iodine.len());
    let (denied, screened, skipped) =
        rate("[network]\nallow = [\"*.hidemyself.org\"]\n[network.dns]\nstrict = true\n", &iodine);
    let share = denied as f64 / screened as f64;
    eprintln!("iodine: {denied} of {screened} refused ({:.2}%), {skipped} not encodable", share * 100.0);
    assert!(share >= 0.99, "only {:.2}% refused", share * 100.0);
    // The parent itself is allowed: a plain name under it is answered.
    let (eg, _) = egress(
        "[network]\nallow = [\"*.hidemyself.org\"]\n[network.dns]\nstrict = true\n",
        Access::default(),
        None,
        true,
    );
    assert!(!refused(&eg.screen(&query(1, "www.hidemyself.org", 1).unwrap(), true)));
}

#[test]
fn at_most_1_percent_of_ordinary_names_are_refused() {
    let plain = names(include_str!("../data/dns_tunnel_netrack/names_plain.csv"));
    assert!(plain.len() > 8000, "{}", plain.len());
    let (refused, screened, _) = rate("[network]\nallow = [\"*\"]\n[network.dns]\nstrict = true\n", &plain);
    let share = refused as f64 / screened as f64;
    eprintln!("ordinary: {refused} of {screened} refused ({:.2}%)", share * 100.0);
    assert!(share <= 0.01, "{:.2}% refused", share * 100.0);
}

#[test]
fn without_strict_tunnel_names_are_flagged_not_refused() {
    let (eg, records) = egress("[network]\nallow = [\"*.hidemyself.org\"]\n", Access::default(), None, false);
    let name = "0aqa1YtxElHt3ACRv4Z93WgUhrSIggiscTwe.hidemyself.org";
    assert!(!refused(&eg.screen(&query(1, name, 1).unwrap(), true)));
    let dns = records.of("dns");
    assert!(dns.iter().any(|r| r["flag"].as_str().is_some_and(|f| f.contains("tunnel"))), "{dns:?}");
}

#[test]
fn denied_names_and_other_types_are_refused_and_recorded() {
    let (eg, records) = egress("[network]\nallow = [\"allowed.test\"]\n", Access::default(), None, false);
    assert!(refused(&eg.screen(&query(1, "denied.example", 1).unwrap(), true)));
    assert!(refused(&eg.screen(&query(2, "allowed.test", 16).unwrap(), true)), "TXT is refused");
    assert!(!refused(&eg.screen(&query(3, "allowed.test", 1).unwrap(), true)));
    let dns = records.of("dns");
    let denied: Vec<&str> = dns.iter().filter(|r| r["decision"] == "deny").filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(denied, ["denied.example", "allowed.test"], "{dns:?}");
}
