//! `mdlr completions SHELL` in the real shells: the script the binary prints is loaded into
//! bash, zsh and fish, a line is typed, and what the shell offers at the cursor is
//! compared with what it should be. A missing shell fails the test; `.ci/run` installs
//! zsh and fish.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Every line typed before TAB, and what must be offered: sorted, without duplicates,
/// descriptions or a directory's trailing `/`, and without the `--opt=` a shell may
/// keep in front of a value. The shell runs in a directory holding `evidence.txt` and
/// `evidence-dir/`.
fn cases() -> Vec<(&'static str, Vec<String>)> {
    let clouds: Vec<&str> = mdlr::Cloud::ALL.iter().map(|c| c.name()).collect();
    let both = ["evidence-dir", "evidence.txt"];
    let raw: Vec<(&'static str, Vec<&str>)> = vec![
        // Commands, and options before them with their values skipped.
        ("mdlr res", vec!["result"]),
        ("mdlr help lo", vec!["login", "logout"]),
        ("mdlr -v --json act", vec!["action", "actions"]),
        ("mdlr --cloud eu res", vec!["result"]),
        ("mdlr --pro", vec!["--progress", "--proxy"]),
        // A command's own options, and not another's.
        ("mdlr result --ind", vec!["--index"]),
        ("mdlr result abc --wait", vec!["--wait", "--wait-timeout"]),
        ("mdlr link --rev", vec!["--reveal"]),
        ("mdlr link --ra", vec![]),
        (
            "mdlr login --t",
            vec!["--tenant", "--timeout", "--token-file"],
        ),
        // Values the table knows.
        ("mdlr --cloud ", clouds.clone()),
        ("mdlr link x --cloud ", clouds),
        ("mdlr --cloud=g", vec!["gcc", "gcc-high"]),
        (
            "mdlr --auth ",
            vec![
                "auto",
                "azure-cli",
                "client-certificate",
                "client-secret",
                "device-code",
                "managed-identity",
                "token",
            ],
        ),
        ("mdlr run h1 --on-busy ", vec!["fail", "skip", "wait"]),
        (
            "mdlr actions --status ",
            vec![
                "Cancelled",
                "Failed",
                "InProgress",
                "Pending",
                "Succeeded",
                "TimeOut",
            ],
        ),
        ("mdlr completions ", vec!["bash", "fish", "zsh"]),
        ("mdlr library ", vec!["delete", "list", "upload"]),
        // Free text: nothing, not even a command or an option in place of the value.
        ("mdlr --scope ", vec![]),
        ("mdlr result --index ", vec![]),
        ("mdlr run h1 --args -", vec![]),
        ("mdlr library delete ", vec![]),
        ("mdlr logout ", vec![]),
        // Local files and directories.
        ("mdlr result -o ev", both.to_vec()),
        ("mdlr --token-file ev", both.to_vec()),
        ("mdlr --ca-cert ev", both.to_vec()),
        ("mdlr run h1 --machines-file ev", both.to_vec()),
        ("mdlr library upload ev", both.to_vec()),
        ("mdlr getfile h1 -o ev", vec!["evidence-dir"]),
        ("mdlr run h1 --output ev", vec!["evidence-dir"]),
    ];
    raw.into_iter()
        .map(|(line, words)| {
            let mut words: Vec<String> = words.into_iter().map(str::to_owned).collect();
            words.sort();
            (line, words)
        })
        .collect()
}

/// What a shell offered, made comparable (see [`cases`]).
fn normalize(offered: &[String]) -> Vec<String> {
    let mut words: Vec<String> = offered
        .iter()
        .map(|w| w.split('\t').next().unwrap_or_default())
        .map(|w| match w.split_once('=') {
            Some((option, value)) if option.starts_with("--") => value,
            _ => w,
        })
        .map(|w| w.trim_end_matches('/').to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    words.sort();
    words.dedup();
    words
}

/// A scratch directory with the shell's home, the completion script `name` as
/// `mdlr completions SHELL` printed it, and `work/` to complete in.
fn setup(shell: &str, name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new();
    let out = Run::new(&["completions", shell]).run();
    out.status(0);
    assert!(
        out.stdout.contains("mdlr") && out.stderr.is_empty(),
        "mdlr completions {shell}:\n{}{}",
        out.stdout,
        out.stderr
    );
    let script = dir.join(name);
    write(&script, &out.stdout);
    std::fs::create_dir_all(dir.join("work/evidence-dir")).expect("create evidence-dir");
    write(dir.join("work/evidence.txt"), "x");
    (dir, script)
}

/// Runs `shell args` in `dir/work` with a clean environment, its home in `dir`, for at
/// most a minute; returns stdout. A missing shell or a failure panics with a clear
/// message.
#[track_caller]
fn run_shell(shell: &str, args: &[&str], dir: &Path) -> String {
    let (stdout, stderr) = (dir.join("shell.out"), dir.join("shell.err"));
    let mut cmd = Command::new(shell);
    cmd.args(args)
        .current_dir(dir.join("work"))
        .env_clear()
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("create shell.out"))
        .stderr(File::create(&stderr).expect("create shell.err"));
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{shell} is not installed, and the completion tests run the real shell: \
             install it (apt-get install -y --no-install-recommends zsh fish, as .ci/run does)"
        ),
        Err(e) => panic!("cannot start {shell}: {e}"),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the shell") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shell} {args:?} still running after 60 s; stderr:\n{}",
                String::from_utf8_lossy(&read(&stderr))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (read(&stdout), read(&stderr));
    assert!(
        status.success(),
        "{shell} {args:?}: {status}\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a driver's output (`== LINE`, then one offered word a line) by line.
fn offered(output: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_line: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for l in output.lines() {
        if let Some(line) = l.strip_prefix("== ") {
            current = Some(line.to_owned());
            by_line.entry(line.to_owned()).or_default();
        } else if let Some(line) = &current {
            by_line.entry(line.clone()).or_default().push(l.to_owned());
        }
    }
    by_line
}

/// Compares what `shell` offered with [`cases`], every mismatch in one message.
#[track_caller]
fn check(shell: &str, output: &str) {
    let offered = offered(output);
    let mut wrong = Vec::new();
    for (line, want) in cases() {
        match offered.get(line) {
            None => wrong.push(format!("{line:?}: the shell said nothing")),
            Some(got) if normalize(got) != want => {
                wrong.push(format!("{line:?}: offered {got:?}, want {want:?}"));
            }
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{shell} completion:\n  {}\n--- driver output\n{output}",
        wrong.join("\n  ")
    );
}

#[test]
fn completions_prints_a_script_per_shell_and_refuses_others() {
    for (shell, first) in [
        ("bash", "# bash completion for mdlr"),
        ("zsh", "#compdef mdlr\n"),
        ("fish", "# fish completion for mdlr"),
    ] {
        let out = Run::new(&["completions", shell]).run();
        out.status(0);
        assert!(
            out.stdout.starts_with(first),
            "mdlr completions {shell}:\n{}",
            out.stdout
        );
    }
    Run::new(&["completions"]).check(
        64,
        "",
        "mdlr: completions needs a SHELL: bash, zsh or fish\n\
         Run `mdlr help completions` for its usage.\n",
    );
    Run::new(&["completions", "tcsh"]).check(
        64,
        "",
        "mdlr: completions are for bash, zsh or fish, not \"tcsh\"\n\
         Run `mdlr help completions` for its usage.\n",
    );
    let help = Run::new(&["help", "completions"]).run();
    help.status(0);
    assert!(
        help.stdout.contains("Usage: mdlr completions SHELL"),
        "{}",
        help.stdout
    );
}

/// bash: the words of each line as bash makes them (split at spaces, `=` a word of its
/// own as the default COMP_WORDBREAKS has it), handed to the function `complete -p mdlr`
/// names, the way bash calls it; COMPREPLY is what it offers.
const BASH_DRIVER: &str = r#"
source "$1" || exit 3
spec=$(complete -p mdlr) || { echo "the script registers no completion for mdlr" >&2; exit 4; }
[[ $spec == *" -F "* ]] || { echo "not a function: $spec" >&2; exit 4; }
fn=${spec##*-F }
fn=${fn%% *}
while IFS=$'\t' read -r line rest; do
    IFS=$'\x1f' read -r -a COMP_WORDS <<< "$rest"
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE=$line
    COMP_POINT=${#line}
    COMPREPLY=()
    "$fn" mdlr "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '== %s\n' "$line"
    (( ${#COMPREPLY[@]} )) && printf '%s\n' "${COMPREPLY[@]}"
done < "$2"
"#;

#[test]
fn bash_completes_commands_options_and_values() {
    let (dir, script) = setup("bash", "mdlr.bash");
    run_shell(
        "bash",
        &["--norc", "--noprofile", "-n", &path(&script)],
        dir.path(),
    );
    let mut lines = String::new();
    for (line, _) in cases() {
        // bash's words: `--cloud=g` is `--cloud`, `=`, `g`.
        let spaced = line.replace('=', " = ");
        let mut words: Vec<&str> = spaced.split(' ').collect();
        words.retain(|w| !w.is_empty());
        if line.ends_with(' ') {
            words.push("");
        }
        lines.push_str(&format!("{line}\t{}\x1f\n", words.join("\x1f")));
    }
    write(dir.join("cases"), lines);
    write(dir.join("driver.bash"), BASH_DRIVER);
    let output = run_shell(
        "bash",
        &[
            "--norc",
            "--noprofile",
            &path(&dir.join("driver.bash")),
            &path(&script),
            &path(&dir.join("cases")),
        ],
        dir.path(),
    );
    check("bash", &output);
}

/// fish: `complete -C LINE` after sourcing the script, as fish completes at a prompt.
const FISH_DRIVER: &str = r#"
source $argv[1]; or exit 3
for line in (cat $argv[2])
    printf '== %s\n' $line
    complete -C $line
end
"#;

#[test]
fn fish_completes_commands_options_and_values() {
    let (dir, script) = setup("fish", "mdlr.fish");
    run_shell(
        "fish",
        &["--no-config", "--no-execute", &path(&script)],
        dir.path(),
    );
    let lines: String = cases().iter().map(|(l, _)| format!("{l}\n")).collect();
    write(dir.join("cases"), lines);
    write(dir.join("driver.fish"), FISH_DRIVER);
    let output = run_shell(
        "fish",
        &[
            "--no-config",
            &path(&dir.join("driver.fish")),
            &path(&script),
            &path(&dir.join("cases")),
        ],
        dir.path(),
    );
    check("fish", &output);
}

/// zsh, inside the interactive shell that zpty drives: compinit finds `_mdlr` on fpath
/// (the way the script is installed), and compadd writes every match it is handed to
/// a file before adding it.
const ZSH_SETUP: &str = r#"
PS1='> '
fpath=($ZT_DIR $fpath)
autoload -Uz compinit && compinit -u -D
bindkey -e
# No listing, no question, no beep: nothing but the line.
unsetopt auto_list list_beep beep
zstyle ':completion:*' insert-tab false
compadd() {
    # Calls that only match (-O, -A, -D) are the completion system's own bookkeeping.
    if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
        builtin compadd "$@"
        return
    fi
    local -a hits
    builtin compadd -A hits "$@"
    (( $#hits )) && print -rl -- $hits >> $ZT_OUT
    builtin compadd "$@"
}
_zt_done() { print -r -- done > $ZT_OUT.done }
# Ctrl-G: an empty line for the next case. The completion system empties
# comppostfuncs after each completion.
_zt_next() {
    BUFFER=
    comppostfuncs=(_zt_done)
    print -r -- ready > $ZT_OUT.ready
}
zle -N _zt_next
bindkey '^G' _zt_next
zle-line-init() { zle _zt_next }
zle -N zle-line-init
"#;

/// zsh: types each line and a TAB into an interactive zsh under zpty, waits for the
/// completion to finish and prints what it offered; Ctrl-G empties the line for the next.
const ZSH_DRIVER: &str = r#"
zmodload zsh/zpty || { print -u2 "zsh/zpty is missing"; exit 3 }
export ZT_DIR=$1 ZT_OUT=$1/offered
rm -f $ZT_OUT $ZT_OUT.ready $ZT_OUT.done
wait_for() {
    local i
    for i in {1..400}; do
        [[ -e $1 ]] && return 0
        zpty -r -t z junk 2>/dev/null
        sleep 0.05
    done
    print -u2 "zsh: no $2 after 20 s"
    exit 4
}
zpty z "zsh -f -i"
zpty -w z "source ${(q)ZT_DIR}/setup.zsh"
wait_for $ZT_OUT.ready "first prompt"
local line
for line in "${(@f)$(<$2)}"; do
    rm -f $ZT_OUT $ZT_OUT.ready $ZT_OUT.done
    zpty -n -w z "$line"$'\t'
    wait_for $ZT_OUT.done "completion of ${(qq)line}"
    print -r -- "== $line"
    [[ -e $ZT_OUT ]] && print -r -- "$(<$ZT_OUT)"
    zpty -n -w z $'\C-g'
    wait_for $ZT_OUT.ready "empty line after ${(qq)line}"
done
zpty -d z
"#;

#[test]
fn zsh_completes_commands_options_and_values() {
    let (dir, script) = setup("zsh", "_mdlr");
    run_shell("zsh", &["-f", "-n", &path(&script)], dir.path());
    let lines: String = cases().iter().map(|(l, _)| format!("{l}\n")).collect();
    write(dir.join("cases"), lines);
    write(dir.join("setup.zsh"), ZSH_SETUP);
    write(dir.join("driver.zsh"), ZSH_DRIVER);
    let output = run_shell(
        "zsh",
        &[
            "-f",
            &path(&dir.join("driver.zsh")),
            &path(dir.path()),
            &path(&dir.join("cases")),
        ],
        dir.path(),
    );
    check("zsh", &output);
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
