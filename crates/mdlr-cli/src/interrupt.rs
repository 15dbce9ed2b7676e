//! Ctrl-C while waiting: say which actions go on running and how to pick them up.

use std::io::IsTerminal;
use std::sync::Mutex;

struct Watch {
    /// Action id and machine name of every unfinished action we started or follow.
    actions: Vec<(String, String)>,
    /// Whether `--resume` can continue the run (a batch with a journal).
    resumable: bool,
    active: bool,
}

static WATCH: Mutex<Watch> = Mutex::new(Watch {
    actions: Vec::new(),
    resumable: false,
    active: false,
});

fn lock() -> std::sync::MutexGuard<'static, Watch> {
    WATCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts watching for Ctrl-C. Without a handler (it could not be installed) Ctrl-C
/// ends the process as usual, and the actions go on all the same.
pub fn watch(resumable: bool) {
    {
        let mut w = lock();
        w.resumable = resumable;
        w.active = true;
    }
    // Installing twice fails harmlessly; the first handler reads the same state.
    let _ = ctrlc::set_handler(on_interrupt);
}

/// An action is now running on a machine.
pub fn started(action_id: &str, machine: &str) {
    lock()
        .actions
        .push((action_id.to_owned(), machine.to_owned()));
}

/// An action is no longer ours to mention.
pub fn ended(action_id: &str) {
    lock().actions.retain(|(id, _)| id != action_id);
}

/// Waiting is over: Ctrl-C has nothing left to say.
pub fn done() {
    let mut w = lock();
    w.active = false;
    w.actions.clear();
}

fn on_interrupt() {
    let w = lock();
    // Clear the live count first, on a terminal only: a log file gets plain lines.
    let mut text = if std::io::stderr().is_terminal() {
        String::from("\r\x1b[2K")
    } else {
        String::new()
    };
    if w.active && !w.actions.is_empty() {
        text.push_str(&format!(
            "mdlr: interrupted; {} action(s) go on running on the machines:\n",
            w.actions.len()
        ));
        for (id, machine) in &w.actions {
            text.push_str(&format!(
                "  {machine}: pick it up later with `mdlr result {id} --all --wait`\n"
            ));
        }
        if w.resumable {
            text.push_str("mdlr: or run the same command again with --resume\n");
        }
    } else {
        text.push_str("mdlr: interrupted\n");
    }
    eprint!("{text}");
    std::process::exit(130);
}
