//! Game-day scenario files (`scenarios/*.yaml`) as feature steps: the building
//! blocks `stormdrill gameday` runs for people, run unattended in a feature.

use cucumber::when;

use crate::world::World;

#[derive(Debug, thiserror::Error)]
pub enum GamedayStepError {
    #[error("game-day scenario {name}: {why}")]
    Failed { name: String, why: String },
}

#[when(regex = r#"^the game-day scenario "([^"]+)" is run$"#)]
async fn scenario_is_run(world: &mut World, name: String) -> Result<(), GamedayStepError> {
    crate::gameday::run_in_world(world, &name)
        .await
        .map_err(|why| GamedayStepError::Failed { name, why })
}
