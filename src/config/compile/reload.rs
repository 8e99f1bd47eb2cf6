//! `reload`: watching the configuration (and the files it names) for changes.

use crate::config::source::ConfigPath;
use crate::runtime::ReloadSettings;
use std::time::Duration;

use super::*;

/// `reload`: file watching on by default, checked every second.
pub(super) fn compile_reload(
    r: Option<&ReloadConfig>,
    ctx: &mut Ctx<'_>,
) -> Option<ReloadSettings> {
    let interval = r.and_then(|r| r.intervalMillis).unwrap_or(1000);
    if interval < 100 {
        ctx.diags.error_hint(
            &ConfigPath::root().key("reload").key("intervalMillis"),
            format!("intervalMillis {interval} is too short"),
            "use at least 100 (the default, 1000, suits most deployments)",
        );
        return None;
    }
    Some(ReloadSettings {
        watch: r.and_then(|r| r.watch).unwrap_or(true),
        interval: Duration::from_millis(interval),
    })
}
