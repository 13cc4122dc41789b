//! `type: noop`: does nothing and succeeds; a join point or a placeholder in a graph.

use super::{StepContext, StepError, StepOutput};

pub async fn run(_ctx: &StepContext) -> Result<StepOutput, StepError> {
    Ok(StepOutput::default())
}
