//! The store's contract: the same cases, run against SQLite and PostgreSQL.
//!
//! Test names show the backend: `sqlite::append_and_read`, `postgres::append_and_read`.
//! PostgreSQL comes from `BONDLEDGER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each case runs in a schema of its own,
//! dropped afterwards. When PostgreSQL cannot be reached, its cases fail if `CI=true`
//! and otherwise warn loudly and pass.

#[path = "contract/cases.rs"]
mod cases;
#[path = "contract/harness.rs"]
mod harness;

macro_rules! contract_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::harness::run(crate::harness::Kind::Sqlite, |ledger| {
                        Box::pin(crate::cases::$case(ledger))
                    })
                    .await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::harness::run(crate::harness::Kind::Postgres, |ledger| {
                        Box::pin(crate::cases::$case(ledger))
                    })
                    .await;
                }
            )*
        }
    };
}

contract_tests!(
    append_and_read,
    reads_are_paged,
    replay_reads_match_whole_reads,
    stale_expected_version_is_a_conflict_and_writes_nothing,
    concurrent_appenders_race_and_one_wins_each_version,
    same_caller_id_same_content_is_skipped,
    same_caller_id_other_content_is_an_id_conflict,
    retrying_a_committed_append_succeeds,
    a_session_sees_its_own_appends,
    a_rolled_back_session_leaves_nothing,
    a_dropped_session_leaves_nothing,
    a_failing_append_in_a_session_leaves_nothing_after_drop,
    a_session_goes_on_after_a_refusal,
    a_failed_write_cannot_be_committed,
    a_committed_session_keeps_every_stream,
    events_refuse_update_and_delete,
    a_tampered_payload_is_named,
    a_deleted_event_is_named,
    a_follower_sees_every_event_once_in_order,
    a_hundred_thousand_events_in_one_append,
    reopening_keeps_the_ledger,
    invalid_input_is_refused,
    tokens_are_found_by_hash_and_keep_nothing_else,
    tokens_are_listed_and_revoked_without_being_deleted,
    only_one_first_token_is_kept_whoever_races,
    runs_append_in_order_across_streams,
    runs_are_refused_whole,
    appends_cross_partition_boundaries,
    a_look_up_under_the_lock_serves_the_appends_after_it,
    a_look_up_under_the_lock_holds_other_appenders_off,
    a_presumed_append_plans_on_the_last_commit,
    a_presumed_write_cut_off_is_found_not_written,
    timeline_queries_find_exactly_the_matching_rows,
    a_large_append_stores_every_field_as_given,
    manual_rows_are_written_as_each_change_says,
    a_session_moving_streams_again_and_again_leaves_their_heads_at_commit,
);
