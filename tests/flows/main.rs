//! The functions' flows through their routers on a throw-away local app with a manual
//! clock (`shared::testing::TestApp`), one module per function, in one test binary.

mod auth;
mod budgets;
mod emergency;
mod profile;
mod takeover;
mod units_of_work;
