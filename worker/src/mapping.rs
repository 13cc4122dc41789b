//! `foreach` from a template: the placeholder's attempt renders it into the list of items
//! its mapped instances are created with (`Store::expand_mapped_task`).

use serde_json::Value;

use crate::steps::{StepContext, StepError};

/// How much of a rendered `foreach` an error shows.
const SHOWN_CHARS: usize = 200;

/// Renders the `foreach` template into its items. A template that is one expression
/// (`{{ outputs.list.files }}`) is rendered as JSON, so a list value keeps its types; what
/// renders to a string is read as JSON text (`["a.csv", "b.csv"]`). Anything but a list is
/// an error naming `foreach` and what it rendered.
pub(crate) fn items(template: &str, ctx: &StepContext) -> Result<Vec<Value>, StepError> {
    let source = match single_expression(template) {
        Some(expression) => format!("{{{{ ({expression}) | tojson }}}}"),
        None => template.to_owned(),
    };
    let rendered = ctx.render("foreach", &source)?;
    let mut value: Option<Value> = serde_json::from_str(rendered.trim()).ok();
    if let Some(Value::String(text)) = &value {
        value = serde_json::from_str(text.trim()).ok();
    }
    match value {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(StepError::new(format!(
            "`foreach` must render to a JSON list, but it rendered `{}`",
            ctx.log.mask(&cut(&rendered))
        ))),
    }
}

/// The expression of a template that is exactly `{{ expression }}`.
fn single_expression(template: &str) -> Option<&str> {
    let inner = template
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim();
    let plain = !inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%");
    (plain && !inner.is_empty()).then_some(inner.trim_start_matches('-').trim_end_matches('-'))
}

fn cut(text: &str) -> String {
    let mut chars = text.chars();
    let shown: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_some() {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_expressions_are_recognised() {
        assert_eq!(
            single_expression("{{ outputs.a.files }}"),
            Some("outputs.a.files")
        );
        assert_eq!(single_expression(" {{ x }}\n"), Some("x"));
        assert_eq!(single_expression("[{{ a }}, {{ b }}]"), None);
        assert_eq!(single_expression("{{ a }} {{ b }}"), None);
    }

    #[test]
    fn long_renderings_are_cut() {
        let long = "x".repeat(500);
        assert_eq!(cut(&long).chars().count(), SHOWN_CHARS + 1);
        assert_eq!(cut("short"), "short");
    }
}
