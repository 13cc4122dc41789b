//! Attempts' rendered fields: recorded under the lease, read per run.

use super::*;

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

pub async fn rendered_fields_are_recorded_under_the_lease_and_read_per_run(store: &dyn Store) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("a", &[])])).await;
    let claimed = claim_one(store, t(DAY)).await;
    assert!(
        store
            .rendered_fields(run.pk)
            .await
            .expect("reading rendered fields")
            .is_empty(),
        "nothing rendered yet"
    );
    store
        .record_rendered(&claimed.lease, &fields(&[("command", "echo draft")]))
        .await
        .expect("recording the first rendering");
    let rendered = fields(&[("command", "echo 2026-01-01"), ("env.API_TOKEN", "***")]);
    store
        .record_rendered(&claimed.lease, &rendered)
        .await
        .expect("recording again replaces");
    let forged = Lease {
        attempt_id: claimed.lease.attempt_id,
        token: "not-the-token".to_owned(),
    };
    assert_lease_lost(
        store
            .record_rendered(&forged, &fields(&[("command", "rm -rf /")]))
            .await,
        "record with a forged lease",
    );
    assert_eq!(
        store.rendered_fields(run.pk).await.expect("reading"),
        [RenderedRecord {
            attempt_id: claimed.lease.attempt_id,
            fields: rendered.clone(),
        }]
    );
    store
        .finish_attempt(&finished(&claimed, AttemptOutcome::Success, t(DAY + 1)))
        .await
        .expect("finishing");
    assert_lease_lost(
        store
            .record_rendered(&claimed.lease, &fields(&[("command", "late")]))
            .await,
        "record after the end",
    );
    let other = started_run(store, &daily_run("sales", 1, vec![task("a", &[])])).await;
    assert!(
        store
            .rendered_fields(other.pk)
            .await
            .expect("reading")
            .is_empty(),
        "another run's attempts are not this run's"
    );
    assert_eq!(
        store.rendered_fields(run.pk).await.expect("reading")[0].fields,
        rendered,
        "the record outlives the lease"
    );
}
