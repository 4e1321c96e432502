//! Game-day scenario files (`scenarios/*.yaml`) as feature steps: the building
//! blocks `stormdrill gameday` runs for people, run unattended in a feature.

use cucumber::when;

use crate::world::World;

#[derive(Debug, thiserror::Error)]
pub enum GamedayStepError {
    #[error("game-day scenario {name}: {why}")]
    Failed { name: String, why: String },
}

/// The scenario a `the game-day scenario "NAME" is run` step names (for the
/// pre-flight, which loads it before anything runs).
pub fn scenario_named(text: &str) -> Option<&str> {
    text.strip_prefix("the game-day scenario \"")?
        .strip_suffix("\" is run")
        .filter(|n| !n.is_empty() && !n.contains('"'))
}

#[when(regex = r#"^the game-day scenario "([^"]+)" is run$"#)]
async fn scenario_is_run(world: &mut World, name: String) -> Result<(), GamedayStepError> {
    crate::gameday::run_in_world(world, &name)
        .await
        .map_err(|why| GamedayStepError::Failed { name, why })
}
