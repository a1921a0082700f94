//! End-to-end tests of the suite against moto server. Each test starts its
//! own emulator and pipeline; the functions are the real binaries.

mod approval;
mod bad_input;
mod build_store;
mod concurrency;
mod dashboard;
mod delivery;
mod demo;
mod deploy;
mod dispatch;
mod dispatch_faults;
mod emulator;
mod gates;
mod hostile_build;
mod least_privilege;
mod package;
mod site_build_runner;
mod site_flow;
mod site_guard;
mod site_kvs;
mod site_publish;
mod site_race;
mod site_recovery;
mod site_retention;
mod site_router;
mod stack_deploy;
mod stack_ownership;
mod state_machine_faults;
mod status_history;
mod template;
