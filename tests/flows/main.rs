//! The functions' flows through their routers on a throw-away local app with a manual
//! clock (`shared::testing::TestApp`), one module per function, in one test binary.

mod admin_reads;
mod appointments;
mod auth;
mod budgets;
mod device_links;
mod device_sync;
mod devices;
mod emergency;
mod medications;
mod messages;
mod notes;
mod payments;
mod profile;
mod realtime_messaging;
mod sessions;
mod takeover;
mod units_of_work;
mod video;
