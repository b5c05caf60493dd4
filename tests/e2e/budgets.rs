//! Per-route budgets of a warm read: what one `GET` costs on a Lambda instance that has
//! served it before (session check, verification keys, branch and data keys cached),
//! in requests to each service, counted by the recording wrapper around every port
//! (`shared::ports::recording`; a transaction is one DynamoDB request).
//!
//! The audit tour (`audit_events.rs`) drives every route; each read route's latest
//! successful request is sent again after the tour, twice on one new instance: the
//! first warms it, the second is measured. [`check`] fails when a read route has no
//! budget or its warm read costs other than its budget: more is a regression; less
//! means the table should now say so. The README's table is generated from
//! [`WARM_READS`] and checked against it.

use shared::ports::recording::Counts;
use shared::testing::repo_root;
use std::collections::BTreeSet;

/// One replayed read.
#[derive(Debug, Clone)]
pub struct Observed {
    /// `GET /api/v1/...` (the route pattern).
    pub route: String,
    pub status: u16,
    pub counts: Counts,
    /// The calls in order ([`describe`]).
    pub calls: String,
}

/// The calls of one request, in order: `get USER#`, `query CONV#`, `update RATE#`, a
/// transaction as `tx[put CHAIN# · update AUDITHEAD#]`, `s3 get`, `kms decrypt`.
pub fn describe(accesses: &[shared::ports::recording::Access]) -> String {
    let op = |action: &str| {
        let name = action.split(':').nth(1).unwrap_or(action);
        match name {
            "GetItem" | "GetObject" => "get",
            "PutItem" | "PutObject" => "put",
            "UpdateItem" => "update",
            "DeleteItem" => "delete",
            "Query" => "query",
            "ConditionCheckItem" => "check",
            "Decrypt" => "decrypt",
            "GenerateDataKey" => "generate-data-key",
            other => other,
        }
        .to_string()
    };
    let mut parts = Vec::new();
    let mut accesses = accesses.iter();
    while let Some(access) = accesses.next() {
        let service = access.service();
        if let Some(n) = access.scope.strip_prefix("transaction:") {
            let n: usize = n.parse().unwrap_or(0);
            let items: Vec<String> = accesses
                .by_ref()
                .take(n)
                .map(|a| format!("{} {}", op(a.action), a.scope))
                .collect();
            parts.push(format!("tx[{}]", items.join(" · ")));
        } else if service == "dynamodb" {
            parts.push(format!("{} {}", op(access.action), access.scope));
        } else {
            parts.push(format!("{service} {}", op(access.action)));
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// A warm read's budget: DynamoDB requests, KMS calls, S3 calls (no read route uses
/// SQS or sends anything), and the calls themselves ([`describe`]).
pub struct Budget {
    pub route: &'static str,
    pub dynamodb: usize,
    pub kms: usize,
    pub s3: usize,
    pub calls: &'static str,
}

const fn budget(
    route: &'static str,
    dynamodb: usize,
    kms: usize,
    s3: usize,
    calls: &'static str,
) -> Budget {
    Budget {
        route,
        dynamodb,
        kms,
        s3,
        calls,
    }
}

/// Every read route's warm budget, exactly what its warm read in the tour costs.
pub const WARM_READS: &[Budget] = &[
    budget("GET /.well-known/jwks.json", 0, 0, 0, "none"),
    budget("GET /api/v1/appointments", 3, 0, 0, "update RATE#, query APPTSOF#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/appointments/{id}", 3, 0, 0, "update RATE#, get APPT#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/appointments/{id}/payments", 4, 0, 0, "update RATE#, get APPT#, query PAYSFOR#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/appointments/{id}/video-calls", 4, 0, 0, "update RATE#, get APPT#, query VIDEOSFOR#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/audit", 3, 0, 0, "update RATE#, query ACTION#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/billing/transactions", 3, 0, 0, "update RATE#, query TXNSOF#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/care-relationships", 3, 0, 0, "update RATE#, query CAREOF#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/devices", 2, 0, 0, "update RATE#, query DEVICE#"),
    budget("GET /api/v1/conversations", 5, 0, 0, "update RATE#, query CONVSOF#, get CONV#, get CARE#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/conversations/{id}", 5, 0, 0, "update RATE#, get CONV#, get CONV#, get CARE#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/conversations/{id}/messages", 4, 0, 0, "update RATE#, get CONV#, query CONV#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/documents", 5, 0, 0, "update RATE#, query DOCSHARED#, get DOC#, get DOC#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/documents/{id}", 3, 0, 0, "update RATE#, get DOC#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/documents/{id}/content", 3, 0, 1, "update RATE#, get DOC#, s3 get, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/emergency/contacts", 3, 0, 0, "update RATE#, query ECONTACTS#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/emergency/contacts/{id}", 3, 0, 0, "update RATE#, get ECONTACTS#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/medications", 3, 0, 0, "update RATE#, query MEDSOF#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/medications/{id}", 4, 0, 0, "update RATE#, get MED#, get CARE#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/medications/{id}/adherence", 6, 0, 0, "update RATE#, get MED#, get CARE#, get PROFILE#, query MED#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/observations", 4, 0, 0, "update RATE#, get CARE#, query OBS#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/openapi.json", 0, 0, 0, "none"),
    budget("GET /api/v1/payments/{id}", 3, 0, 0, "update RATE#, get PAYMENT#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/payments/{id}/receipt", 5, 0, 0, "update RATE#, get PAYMENT#, get PROVIDER#, query PAYMENT#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/providers", 4, 0, 0, "update RATE#, query DIRECTORY, query CLAIM#, query CLAIM#"),
    budget("GET /api/v1/providers/{id}/slots", 3, 0, 0, "update RATE#, get PROVIDER#, query CLAIM#"),
    budget("GET /api/v1/secure-notes/{id}/audit-logs", 4, 0, 0, "update RATE#, get NOTE#, query RESOURCE#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/secure-notes/{id}/versions", 6, 0, 0, "update RATE#, get NOTE#, get CARE#, query NOTE#, tx[put CHAIN# · update AUDITHEAD#], tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/sync", 8, 0, 0, "update RATE#, get SYNC#, query SYNC#, get CONV#, get CONV#, get CARE#, get CONV#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/users", 3, 0, 0, "update RATE#, query USERS, tx[put CHAIN# · put CHAIN# · put CHAIN# · put CHAIN# · put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/users/me", 3, 0, 0, "update RATE#, get USER#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/users/me/access-log", 5, 0, 0, "update RATE#, query RESOURCE#, query RESOURCE#, query RESOURCE#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/users/me/profile", 5, 0, 0, "update RATE#, update RATE#, get USER#, get PROFILE#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/users/{id}", 3, 0, 0, "update RATE#, get USER#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/users/{id}/profile", 4, 0, 0, "update RATE#, get USER#, get PROFILE#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /api/v1/video-calls/{id}", 4, 0, 0, "update RATE#, get VIDEOCALL#, query VIDEOCALL#, tx[put CHAIN# · update AUDITHEAD#]"),
    budget("GET /health", 0, 0, 0, "none"),
];

/// `GET` routes that are not reads: the OAuth callback redeems its single-use state
/// (a browser redirect that stores a connection), so it cannot be sent twice.
pub const NOT_READS: &[&str] = &["GET /api/v1/devices/{provider}/callback"];

/// What is wrong with the observed costs: a read route without a budget or a budget
/// without a route, a route whose replay failed, a warm read that costs other than its
/// budget (more is a regression; less means the table should say so).
pub fn check(read_routes: &BTreeSet<String>, observed: &[Observed]) -> Vec<String> {
    let mut problems = Vec::new();
    let budgeted: BTreeSet<String> = WARM_READS.iter().map(|b| b.route.to_string()).collect();
    let read_routes: BTreeSet<String> = read_routes
        .iter()
        .filter(|r| !NOT_READS.contains(&r.as_str()))
        .cloned()
        .collect();
    for route in read_routes.difference(&budgeted) {
        for o in observed.iter().filter(|o| &o.route == route) {
            let c = &o.counts;
            problems.push(format!(
                "NO BUDGET\tbudget({route:?}, {}, {}, {}, {:?}),\t{}",
                c.dynamodb, c.kms, c.s3, o.calls, o.status
            ));
        }
    }
    for route in budgeted.difference(&read_routes) {
        problems.push(format!("{route}: a budget for a route no function serves"));
    }
    for b in WARM_READS {
        let Some(o) = observed.iter().find(|o| o.route == b.route) else {
            problems.push(format!("{}: no successful read was replayed", b.route));
            continue;
        };
        let c = &o.counts;
        let want = (b.dynamodb, b.kms, b.s3, 0, 0, b.calls);
        let got = (c.dynamodb, c.kms, c.s3, c.sqs, c.notify, o.calls.as_str());
        if o.status / 100 != 2 {
            problems.push(format!("{}: the replay answered {}", b.route, o.status));
        } else if got != want {
            problems.push(format!(
                "{}: a warm read costs {got:?}, its budget says {want:?}",
                b.route
            ));
        }
    }
    problems
}

/// The README's table of [`WARM_READS`].
fn table() -> String {
    let mut out = String::from("| route | DynamoDB | KMS | S3 | calls |\n|---|---|---|---|---|\n");
    for b in WARM_READS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            b.route, b.dynamodb, b.kms, b.s3, b.calls
        ));
    }
    out
}

const START: &str = "<!-- warm-read budgets: generated from tests/e2e/budgets.rs -->\n";
const END: &str = "<!-- end of warm-read budgets -->";

#[test]
fn the_readme_shows_the_budget_table() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let start = readme
        .find(START)
        .expect("the README's budget table marker")
        + START.len();
    let end = readme[start..].find(END).expect("its end marker") + start;
    let shown = &readme[start..end];
    if shown != table() {
        panic!(
            "the README's warm-read budgets differ from tests/e2e/budgets.rs; replace them with:\n{}",
            table()
        );
    }
}
