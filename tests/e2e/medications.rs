//! Recording a dose is idempotent per scheduled dose on the AWS adapters: 48 identical
//! records fired at once through 48 apps (as 48 Lambda instances) against the emulator
//! store one dose and one creation event; the others answer the first record. The
//! record is reserved by a conditional put in the audited transaction (never a read
//! first). Runs on its own serial moto (`SerialMoto`: the threaded one corrupts
//! concurrent transactions).

use chrono::{Duration, Utc};
use http::Method;
use serde_json::{json, Value};
use shared::audit::{Action, AuditReader, TimeRange};
use shared::auth::Role;
use shared::http::pagination::PageRequest;
use shared::testing::aws::{sdk_config, stage, Stage};
use shared::testing::{account, dispatch, request};
use shared::App;

const RACERS: usize = 48;

async fn creations(app: &App, medication: &str) -> usize {
    let page = PageRequest {
        limit: 200,
        start: None,
    };
    AuditReader::of(app)
        .by_resource("medication", medication, &TimeRange::default(), &page)
        .await
        .expect("events")
        .items
        .iter()
        .filter(|e| e.action == Action::Create)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_eight_identical_dose_records_on_forty_eight_aws_instances_store_one() {
    if shared::testing::aws::endpoint().is_none() {
        return;
    }
    let emulator = crate::appointments::SerialMoto::start().await;
    let endpoint = emulator.url.clone();
    let sdk = sdk_config(&endpoint);
    let Stage { table, config, .. } = stage(&sdk, &endpoint, "dose", &[]).await;
    let first = shared::adapters::aws::build_app(config.clone(), &sdk);
    let patient = account(&first, "dose.race@example.com", "Dee Race", Role::Patient).await;
    let (token, _) = first
        .tokens
        .issue(&first, &patient, Role::Patient, &first.new_id(), &["pwd"])
        .await
        .expect("token");
    let router = docare_medications::router();
    // Daily at 08:00 UTC (no profile: UTC) since yesterday; yesterday's dose is past.
    let yesterday = (Utc::now() - Duration::days(1)).date_naive();
    let (status, med) = dispatch(
        &router,
        &first,
        request(
            Method::POST,
            "/api/v1/medications",
            Some(&token),
            Some(
                json!({"name": "Metformin", "dosage": "500 mg", "form": "tablet",
                "route": "oral", "starts_on": yesterday.to_string(),
                "schedule": {"kind": "times_of_day", "times": ["08:00"]}}),
            ),
        ),
    )
    .await;
    assert_eq!(status, 201, "{med}");
    let id = med["id"].as_str().expect("id").to_string();
    let scheduled_for = format!("{yesterday}T08:00:00Z");
    let before = creations(&first, &id).await;
    let apps: Vec<App> = (0..RACERS)
        .map(|_| shared::adapters::aws::build_app(config.clone(), &sdk))
        .collect();
    let (answers, most) = docare_e2e::race_identical(
        router,
        apps,
        Method::POST,
        &format!("/api/v1/medications/{id}/doses"),
        &token,
        json!({"scheduled_for": scheduled_for, "status": "taken"}),
    )
    .await;
    eprintln!("{most} of {RACERS} records in flight together");
    assert!(
        most >= 24,
        "the records overlapped: at most {most} in flight"
    );
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "exactly one first record: {answers:?}");
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 201), "{status} {body}");
        assert_eq!(body, created[0], "every repeat answers the first record");
    }
    // The raw table holds one dose item (read with the SDK, not through the adapters).
    let partition = shared::store::keys::dose(&id, "");
    let doses = aws_sdk_dynamodb::Client::new(&sdk)
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :dose)")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(partition.pk),
        )
        .expression_attribute_values(
            ":dose",
            aws_sdk_dynamodb::types::AttributeValue::S(partition.sk),
        )
        .send()
        .await
        .expect("query");
    assert_eq!(doses.count(), 1, "one dose item");
    assert_eq!(
        creations(&first, &id).await - before,
        1,
        "one creation event"
    );
}
