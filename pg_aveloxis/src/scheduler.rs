//! The scheduler's background worker: for installations without pg_cron, it runs
//! `CALL aveloxis.tick()` every `pg_aveloxis.tick_interval` in `pg_aveloxis.database`.
//! It only schedules; the logic is the SQL procedure anyone can CALL (docs/queue.md).
//!
//! Started when the library is in `shared_preload_libraries`; it ticks while
//! `pg_aveloxis.scheduler = on` (reloadable), so turning it off needs no restart.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;

static SCHEDULER: GucSetting<bool> = GucSetting::<bool>::new(false);
static TICK_INTERVAL_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);
static DATABASE: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"postgres"));

/// One tick, its errors turned into a WARNING so the worker keeps going (and a database
/// without the extension yet is waited for, not crashed on).
const TICK: &str = "DO $tick$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_aveloxis') THEN
        CALL aveloxis.tick();
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_aveloxis scheduler: aveloxis.tick() failed: %', SQLERRM;
END
$tick$";

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pg_aveloxis.scheduler",
        c"Run CALL aveloxis.tick() from the pg_aveloxis background worker.",
        c"Needs pg_aveloxis in shared_preload_libraries. Use it where pg_cron is not installed; with pg_cron, \
          use SELECT aveloxis.schedule() instead.",
        &SCHEDULER,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_aveloxis.tick_interval",
        c"Seconds between two ticks of the background worker.",
        c"",
        &TICK_INTERVAL_SECONDS,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // A postmaster-context setting, and the worker, exist only when preloaded.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"pg_aveloxis.database",
            c"The database where the background worker runs aveloxis.tick().",
            c"",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
        BackgroundWorkerBuilder::new("pg_aveloxis scheduler")
            .set_type("pg_aveloxis scheduler")
            .set_function("aveloxis_scheduler_main")
            .set_library("pg_aveloxis")
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(10)))
            .load();
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aveloxis_scheduler_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = DATABASE
        .get()
        .and_then(|d| d.to_str().ok().map(str::to_owned))
        .unwrap_or_else(|| "postgres".to_owned());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("pg_aveloxis scheduler started: database {database}");
    while BackgroundWorker::wait_latch(Some(interval())) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !SCHEDULER.get() {
            continue;
        }
        BackgroundWorker::transaction(|| Spi::run(TICK).expect("the tick block catches its own errors"));
    }
    log!("pg_aveloxis scheduler stopped");
}

fn interval() -> Duration {
    Duration::from_secs(TICK_INTERVAL_SECONDS.get().max(1) as u64)
}
