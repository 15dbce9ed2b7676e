//! `mdlr completions SHELL`: completion scripts for bash, zsh and fish, generated from the
//! table of commands and options that `mdlr help` is rendered from (`args::COMMANDS`,
//! `args::OPTIONS`), so the two cannot drift apart.
//!
//! Every script works the same way: it walks the words before the cursor, skipping the
//! value after each option that takes one, to find the command (the first free word that
//! names one) and the free words after it; then it completes an option's value, an
//! option, a command or a positional argument. Options may come anywhere on the line, as
//! the parser allows.

use std::fmt::Write as _;

use crate::args::{
    BATCH_COMMANDS, COMMANDS, CommandSpec, Kind, OPTIONS, OptionSpec, Scope, Shell, Value,
};

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    match shell {
        Shell::Bash => bash(),
        Shell::Zsh => zsh(),
        Shell::Fish => fish(),
    }
}

// ---------------------------------------------------------------------------------------
// What every script needs from the table.

/// The names (`-o`, `--output`, ...) of every option that takes a value, for any command:
/// the word after one is its value, never a command or an argument.
fn value_options() -> Vec<&'static str> {
    let mut names = Vec::new();
    for o in OPTIONS.iter().filter(|o| o.value.is_some()) {
        for n in o.names() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

fn command_names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

/// The commands an option row belongs to; empty for a global one.
fn scope_commands(scope: Scope) -> &'static [&'static str] {
    match scope {
        Scope::Global => &[],
        Scope::Batch => BATCH_COMMANDS,
        Scope::Only(commands) => commands,
    }
}

/// What completing a value offers.
#[derive(Debug, Clone, PartialEq)]
enum Offer {
    /// One of these words, with what each means (may be empty).
    Words(Vec<(&'static str, &'static str)>),
    /// Local files (and directories, to get to them).
    Files,
    /// Local directories.
    Dirs,
    /// Nothing: free text, described by its name (`DUR`, `ACTION_ID`).
    Nothing(&'static str),
}

impl Offer {
    fn of(value: Value) -> Offer {
        match value.kind {
            Kind::File => Offer::Files,
            Kind::Dir => Offer::Dirs,
            Kind::Text => Offer::Nothing(value.name),
            kind => Offer::Words(kind.words()),
        }
    }
}

/// Where an option's value is completed, and with what.
struct ValueCase {
    /// `(command, option name)`; `None` for any command.
    pairs: Vec<(Option<&'static str>, &'static str)>,
    offer: Offer,
}

/// How to complete option values, in the order the scripts test them: one case per
/// option row, then, for an option given before its command, its first row again for
/// any command.
fn value_cases() -> Vec<ValueCase> {
    let mut cases = Vec::new();
    let mut fallbacks: Vec<ValueCase> = Vec::new();
    for o in OPTIONS {
        let Some(value) = o.value else { continue };
        let commands = scope_commands(o.scope);
        let mut pairs = Vec::new();
        for name in o.names() {
            if commands.is_empty() {
                pairs.push((None, name));
            }
            for c in commands {
                pairs.push((Some(*c), name));
            }
        }
        cases.push(ValueCase {
            pairs,
            offer: Offer::of(value),
        });
        if !commands.is_empty() && !fallbacks.iter().any(|f| f.pairs.contains(&(None, o.long))) {
            fallbacks.push(ValueCase {
                pairs: o.names().map(|n| (None, n)).collect(),
                offer: Offer::of(value),
            });
        }
    }
    cases.extend(fallbacks);
    cases
}

/// A positional argument to complete.
struct Positional {
    command: &'static str,
    /// The sub-command it follows (`library upload PATH`).
    sub: Option<&'static str>,
    /// How many free words come before it after the command (the sub-command
    /// included); `None`: any number from the argument's own position on (`MACHINE...`).
    position: Option<usize>,
    offer: Offer,
}

/// Every positional argument with something to offer.
fn positional_cases() -> Vec<Positional> {
    let mut cases = Vec::new();
    for c in COMMANDS {
        let first = if c.subcommands.is_empty() {
            0
        } else {
            cases.push(Positional {
                command: c.name,
                sub: None,
                position: Some(0),
                offer: Offer::Words(c.subcommands.iter().map(|s| (s.name, s.summary)).collect()),
            });
            for sub in c.subcommands {
                push_args(&mut cases, c, Some(sub.name), 1, sub.args);
            }
            1
        };
        push_args(&mut cases, c, None, first, c.args);
    }
    cases.retain(|p| !matches!(p.offer, Offer::Nothing(_)));
    cases
}

fn push_args(
    cases: &mut Vec<Positional>,
    command: &CommandSpec,
    sub: Option<&'static str>,
    first: usize,
    args: &'static [Value],
) {
    for (i, arg) in args.iter().enumerate() {
        let repeats = arg.name.ends_with("...");
        if repeats && i + 1 < args.len() {
            // `MACHINE... PATH`: which word is PATH shows only at the end of the line.
            break;
        }
        cases.push(Positional {
            command: command.name,
            sub,
            position: (!repeats).then_some(first + i),
            offer: Offer::of(*arg),
        });
    }
}

/// A `case` pattern matching `"$cmd $count $first"` (the command, how many free words
/// precede the cursor, the first of them) for `p`.
fn positional_pattern(p: &Positional) -> String {
    let count = p.position.map_or("\"*\"".to_owned(), |n| n.to_string());
    match p.sub {
        Some(sub) => format!("\"{} {count} {sub}\"", p.command),
        None => format!("\"{} {count} \"*", p.command),
    }
}

/// A `case` pattern matching `"$cmd $option"` (the command empty before it) for these
/// pairs.
fn value_pattern(pairs: &[(Option<&str>, &str)]) -> String {
    let patterns: Vec<String> = pairs
        .iter()
        .map(|(command, option)| match command {
            Some(c) => format!("\"{c} {option}\""),
            None => format!("*\" {option}\""),
        })
        .collect();
    patterns.join("|")
}

/// An option's help cut to a completion description: before `: {values}` or the first
/// `; `.
fn brief(help: &str) -> &str {
    let help = help.split("{values}").next().unwrap_or(help);
    let help = help.split("; ").next().unwrap_or(help);
    help.trim_end_matches([':', ' '])
}

/// The options offered for `command` (every global one; for `None`, only those).
fn offered(command: Option<&str>) -> Vec<&'static OptionSpec> {
    crate::args::options_for(command).collect()
}

/// The options of `command` that are not global.
fn own_options(command: &CommandSpec) -> Vec<&'static OptionSpec> {
    offered(Some(command.name))
        .into_iter()
        .filter(|o| o.scope != Scope::Global)
        .collect()
}

/// `'text'` for sh, bash and zsh.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `'text'` for fish.
fn fish_quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', r"\\").replace('\'', r"\'"))
}

const HEADER: &str = "generated by `mdlr completions` from the table behind `mdlr help`";

/// The option names as one word list: `-o --output --raw ...`.
fn option_words(options: &[&OptionSpec]) -> String {
    let mut words: Vec<&str> = Vec::new();
    for o in options {
        for n in o.names() {
            if !words.contains(&n) {
                words.push(n);
            }
        }
    }
    words.join(" ")
}

// ---------------------------------------------------------------------------------------
// bash

fn bash() -> String {
    let value_options = value_options();
    let commands = command_names().join(" ");
    let mut s = format!(
        "# bash completion for mdlr, {HEADER}.\n\
         # Install: mdlr completions bash > ~/.local/share/bash-completion/completions/mdlr\n\
         # (or source it from ~/.bashrc).\n\n\
         _mdlr_words() {{ mapfile -t COMPREPLY < <(compgen -W \"$1\" -- \"$2\"); }}\n\
         _mdlr_files() {{ compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- \"$1\"); }}\n\
         _mdlr_dirs() {{ compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- \"$1\"); }}\n\n\
         # The value of option $2 of command $1 (empty before the command), from the word $3.\n\
         _mdlr_value() {{\n    case \"$1 $2\" in\n"
    );
    for case in value_cases() {
        if let Some(action) = bash_action(&case.offer, "\"$3\"") {
            let _ = writeln!(s, "        {}) {action} ;;", value_pattern(&case.pairs));
        }
    }
    let _ = write!(
        s,
        r#"    esac
}}

_mdlr() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prefix= opt= cmd= w i
    local -a free=()
    local -i want=0
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        if ((want)); then
            # The option's value (`--opt = value` when COMP_WORDBREAKS splits at '=').
            want=0
            [[ $w == = ]] && want=1
            continue
        fi
        case $w in
            {alternatives}) want=1 ;;
            -*) ;;
            *)
                if [[ -z $cmd && " {commands} " == *" $w "* ]]; then
                    cmd=$w
                else
                    free+=("$w")
                fi
                ;;
        esac
    done
    if [[ $cur == --*=* ]]; then
        opt=${{cur%%=*}}
        prefix=$opt=
        cur=${{cur#*=}}
    elif ((want)); then
        opt=${{COMP_WORDS[COMP_CWORD-1]}}
        [[ $opt == = ]] && opt=${{COMP_WORDS[COMP_CWORD-2]}}
        # `--opt=` when COMP_WORDBREAKS splits at '=': the value is still to come.
        [[ $cur == = ]] && cur=
    fi
    if [[ -n $opt ]]; then
        _mdlr_value "$cmd" "$opt" "$cur"
        [[ -n $prefix ]] && COMPREPLY=("${{COMPREPLY[@]/#/$prefix}}")
        return 0
    fi
    if [[ $cur == -* ]]; then
        local global="{global}"
        case $cmd in
"#,
        alternatives = value_options.join("|"),
        global = option_words(&offered(None)),
    );
    for c in COMMANDS {
        let own = own_options(c);
        if !own.is_empty() {
            let _ = writeln!(
                s,
                "            {}) _mdlr_words \"$global {}\" \"$cur\" ;;",
                c.name,
                option_words(&own)
            );
        }
    }
    let _ = write!(
        s,
        r#"            *) _mdlr_words "$global" "$cur" ;;
        esac
        return 0
    fi
    if [[ -z $cmd ]]; then
        _mdlr_words "{commands}" "$cur"
        return 0
    fi
    case "$cmd ${{#free[@]}} ${{free[0]-}}" in
"#
    );
    for p in positional_cases() {
        if let Some(action) = bash_action(&p.offer, "\"$cur\"") {
            let _ = writeln!(s, "        {}) {action} ;;", positional_pattern(&p));
        }
    }
    s.push_str("    esac\n    return 0\n}\n\ncomplete -F _mdlr mdlr\n");
    s
}

/// The bash call completing `offer` from `word`; `None` when there is nothing to offer.
fn bash_action(offer: &Offer, word: &str) -> Option<String> {
    match offer {
        Offer::Files => Some(format!("_mdlr_files {word}")),
        Offer::Dirs => Some(format!("_mdlr_dirs {word}")),
        Offer::Nothing(_) => None,
        Offer::Words(words) => {
            let words: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            Some(format!("_mdlr_words \"{}\" {word}", words.join(" ")))
        }
    }
}

// ---------------------------------------------------------------------------------------
// zsh

fn zsh() -> String {
    let commands = command_names().join(" ");
    let mut s = format!(
        "#compdef mdlr\n\
         # zsh completion for mdlr, {HEADER}.\n\
         # Install: mdlr completions zsh > ~/.zfunc/_mdlr, with fpath=(~/.zfunc $fpath)\n\
         # before compinit in ~/.zshrc (or: source <(mdlr completions zsh) after compinit).\n\n\
         # The value of option $2 of command $1 (empty before the command).\n\
         _mdlr_value() {{\n    local -a values\n    case \"$1 $2\" in\n"
    );
    for case in value_cases() {
        let _ = writeln!(
            s,
            "        ({}) {} ;;",
            value_pattern(&case.pairs),
            zsh_action(&case.offer)
        );
    }
    let _ = write!(
        s,
        r#"    esac
}}

_mdlr() {{
    local cur=${{words[CURRENT]}} cmd= w
    local -a free options values
    local -i i want=0
    for (( i = 2; i < CURRENT; i++ )); do
        w=${{words[i]}}
        if (( want )); then
            want=0
            continue
        fi
        case $w in
            ({alternatives}) want=1 ;;
            (-*) ;;
            (*)
                if [[ -z $cmd && " {commands} " == *" $w "* ]]; then
                    cmd=$w
                else
                    free+=("$w")
                fi
                ;;
        esac
    done
    if (( want )); then
        _mdlr_value "$cmd" "${{words[CURRENT-1]}}"
        return
    fi
    if [[ $cur == --*=* ]]; then
        w=${{cur%%=*}}
        compset -P '*='
        _mdlr_value "$cmd" "$w"
        return
    fi
    if [[ $cur == -* ]]; then
        options=({global})
        case $cmd in
"#,
        alternatives = value_options().join("|"),
        global = zsh_option_items(&offered(None)),
    );
    for c in COMMANDS {
        let own = own_options(c);
        if !own.is_empty() {
            let _ = writeln!(
                s,
                "            ({}) options+=({}) ;;",
                c.name,
                zsh_option_items(&own)
            );
        }
    }
    let command_items: Vec<String> = COMMANDS
        .iter()
        .map(|c| sh_quote(&format!("{}:{}", c.name, c.summary)))
        .collect();
    let _ = write!(
        s,
        r#"        esac
        _describe -t options option options
        return
    fi
    if [[ -z $cmd ]]; then
        values=({command_items})
        _describe -t commands 'mdlr command' values
        return
    fi
    case "$cmd ${{#free}} ${{free[1]}}" in
"#,
        command_items = command_items.join(" "),
    );
    for p in positional_cases() {
        let _ = writeln!(
            s,
            "        ({}) {} ;;",
            positional_pattern(&p),
            zsh_action(&p.offer)
        );
    }
    s.push_str(
        "    esac\n}\n\n\
         if [[ $funcstack[1] == _mdlr ]]; then\n    _mdlr \"$@\"\nelse\n    compdef _mdlr mdlr\nfi\n",
    );
    s
}

/// `'--output:a file, or a directory...' ...` for `_describe`.
fn zsh_option_items(options: &[&OptionSpec]) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for o in options {
        for n in o.names() {
            if !seen.contains(&n) {
                seen.push(n);
                items.push(sh_quote(&format!("{n}:{}", brief(o.help))));
            }
        }
    }
    items.join(" ")
}

/// The zsh call completing `offer` (in a function with a local array `values`).
fn zsh_action(offer: &Offer) -> String {
    match offer {
        Offer::Files => "_files".to_owned(),
        Offer::Dirs => "_files -/".to_owned(),
        Offer::Nothing(name) => format!("_message {}", sh_quote(name)),
        Offer::Words(words) => {
            let items: Vec<String> = words
                .iter()
                .map(|(w, help)| match *help {
                    "" => sh_quote(w),
                    help => sh_quote(&format!("{w}:{help}")),
                })
                .collect();
            format!(
                "values=({}); _describe -t values value values",
                items.join(" ")
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// fish

fn fish() -> String {
    let mut s = format!(
        "# fish completion for mdlr, {HEADER}.\n\
         # Install: mdlr completions fish > ~/.config/fish/completions/mdlr.fish\n\n"
    );
    let _ = write!(
        s,
        r#"# What the words before the cursor say, one a line: 1 when the word being completed
# is the value of an option (else 0), the command ('' before it), the free words.
function __mdlr_state
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l cmd ''
    set -l free
    set -l want 0
    for t in $tokens
        if test $want = 1
            set want 0
            continue
        end
        switch $t
            case {value_options}
                set want 1
            case '-*'
            case '*'
                if test -z "$cmd"; and contains -- $t {commands}
                    set cmd $t
                else
                    set -a free $t
                end
        end
    end
    printf '%s\n' $want $cmd $free
end

# Succeeds when the option named $argv[1] (its names, comma-separated) belongs on the
# line: for commands $argv[2..] (any when none), and while an option waits for its
# value, only when it is this one and the value is not taken for an option (`--args -`).
function __mdlr_option
    set -l state (__mdlr_state)
    if test "$state[1]" = 1
        string match -q -- '-*' (commandline -ct); and return 1
        contains -- (commandline -opc)[-1] (string split , -- $argv[1]); or return 1
    end
    test (count $argv) -lt 2; or contains -- "$state[2]" $argv[2..-1]
end

# Succeeds when the word being completed is free word $argv[2] (counting from 0; '*':
# any) of command $argv[1] ('': before the command), after sub-command $argv[3] if given.
function __mdlr_at
    set -l state (__mdlr_state)
    test "$state[1]" = 0; and test "$state[2]" = "$argv[1]"; or return 1
    test -z "$argv[1]"; and return 0
    test "$argv[2]" = '*'; or test (math (count $state) - 2) = "$argv[2]"; or return 1
    test (count $argv) -lt 3; or test "$state[3]" = "$argv[3]"
end

"#,
        value_options = value_options().join(" "),
        commands = command_names().join(" "),
    );
    // Closed lists of words, printed by __mdlr_list N (with what each means).
    let mut lists: Vec<Vec<(&str, &str)>> = Vec::new();
    let mut list = |words: &Vec<(&'static str, &'static str)>| -> String {
        let n = match lists.iter().position(|l| l == words) {
            Some(n) => n,
            None => {
                lists.push(words.clone());
                lists.len() - 1
            }
        };
        format!(" -a '(__mdlr_list {n})'")
    };
    let mut lines = vec![
        "complete -c mdlr -f".to_owned(),
        format!(
            "complete -c mdlr -n '__mdlr_at \"\"'{}",
            list(&Kind::Command.words())
        ),
    ];
    for o in OPTIONS {
        let names: Vec<&str> = o.names().collect();
        let mut line = format!("complete -c mdlr -n '__mdlr_option {}", names.join(","));
        for c in scope_commands(o.scope) {
            let _ = write!(line, " {c}");
        }
        line.push('\'');
        if let Some(short) = o.short.strip_prefix('-') {
            let _ = write!(line, " -s {short}");
        }
        let _ = write!(line, " -l {}", o.long.trim_start_matches('-'));
        if let Some(value) = o.value {
            // -r: the next word is the value; -x: and no file unless offered.
            match Offer::of(value) {
                Offer::Files => line.push_str(" -r -F"),
                Offer::Dirs => line.push_str(" -x -a '(__fish_complete_directories)'"),
                Offer::Nothing(_) => line.push_str(" -x"),
                Offer::Words(words) => {
                    line.push_str(" -x");
                    line.push_str(&list(&words));
                }
            }
        }
        let _ = write!(line, " -d {}", fish_quote(brief(o.help)));
        lines.push(line);
    }
    for p in positional_cases() {
        let at = p.position.map_or("'*'".to_owned(), |n| n.to_string());
        let sub = p.sub.map(|s| format!(" {s}")).unwrap_or_default();
        let action = match &p.offer {
            Offer::Files => " -F".to_owned(),
            Offer::Dirs => " -a '(__fish_complete_directories)'".to_owned(),
            Offer::Words(words) => list(words),
            Offer::Nothing(_) => continue,
        };
        lines.push(format!(
            "complete -c mdlr -n \"__mdlr_at {} {at}{sub}\"{action}",
            p.command
        ));
    }
    s.push_str("function __mdlr_list\n    switch $argv[1]\n");
    for (n, words) in lists.iter().enumerate() {
        let _ = writeln!(s, "        case {n}");
        for (w, help) in words {
            let _ = writeln!(
                s,
                "            printf '%s\\t%s\\n' {w} {}",
                fish_quote(help)
            );
        }
    }
    s.push_str("    end\nend\n\n");
    for line in lines {
        s.push_str(&line);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{AUTH_METHODS, ON_BUSY, SHELLS, STATUSES};

    fn scripts() -> [(Shell, String); 3] {
        [
            (Shell::Bash, script(Shell::Bash)),
            (Shell::Zsh, script(Shell::Zsh)),
            (Shell::Fish, script(Shell::Fish)),
        ]
    }

    /// Whether `text` holds `word` as a word of its own (not `auto` in `autoload`).
    fn has_word(text: &str, word: &str) -> bool {
        let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        text.match_indices(word)
            .any(|(i, _)| !text[..i].ends_with(part) && !text[i + word.len()..].starts_with(part))
    }

    #[test]
    fn every_script_knows_every_command_option_and_word() {
        let mut words: Vec<&str> = Vec::new();
        for list in [AUTH_METHODS, ON_BUSY, STATUSES, SHELLS] {
            words.extend(list.iter().map(|w| w.name));
        }
        words.extend(mdlr::Cloud::ALL.iter().map(|c| c.name()));
        for c in COMMANDS {
            words.push(c.name);
            words.extend(c.subcommands.iter().map(|s| s.name));
        }
        for (shell, text) in scripts() {
            for w in &words {
                assert!(has_word(&text, w), "{shell:?}: {w}");
            }
            for o in OPTIONS {
                // fish names options without their dashes: `-s o -l output`.
                let long = match shell {
                    Shell::Fish => format!("-l {}", &o.long[2..]),
                    _ => o.long.to_owned(),
                };
                assert!(text.contains(&long), "{shell:?}: {}", o.long);
            }
        }
    }

    #[test]
    fn the_word_after_an_option_taking_a_value_is_its_value() {
        let takes = value_options();
        for o in OPTIONS {
            for name in o.names() {
                assert_eq!(takes.contains(&name), o.value.is_some(), "{name}");
            }
        }
        let (_, bash) = &scripts()[0];
        assert!(bash.contains(&format!("            {}) want=1 ;;", takes.join("|"))));
    }

    #[test]
    fn values_are_offered_by_kind_and_command() {
        let cases = value_cases();
        let offer = |command: &str, option: &str| {
            cases
                .iter()
                .find(|case| {
                    case.pairs
                        .iter()
                        .any(|(c, o)| *o == option && c.is_none_or(|c| c == command))
                })
                .map(|case| case.offer.clone())
        };
        assert_eq!(offer("result", "-o"), Some(Offer::Files));
        assert_eq!(offer("run", "--output"), Some(Offer::Dirs));
        assert_eq!(offer("link", "--token-file"), Some(Offer::Files));
        assert_eq!(offer("link", "--ca-cert"), Some(Offer::Files));
        assert_eq!(offer("getfile", "--machines-file"), Some(Offer::Files));
        assert_eq!(offer("actions", "--scope"), Some(Offer::Nothing("SCOPE")));
        assert_eq!(
            offer("", "--on-busy"),
            Some(Offer::Words(
                ON_BUSY.iter().map(|w| (w.name, w.help)).collect()
            ))
        );
        let Some(Offer::Words(clouds)) = offer("link", "--cloud") else {
            panic!("--cloud offers no words");
        };
        assert_eq!(clouds.len(), mdlr::Cloud::ALL.len());
        let positional: Vec<(&str, Option<&str>, Option<usize>, Offer)> = positional_cases()
            .into_iter()
            .map(|p| (p.command, p.sub, p.position, p.offer))
            .collect();
        assert!(positional.contains(&("library", Some("upload"), Some(1), Offer::Files)));
        assert!(
            positional
                .iter()
                .any(|p| p.0 == "completions" && p.2 == Some(0))
        );
        assert!(positional.iter().any(|p| p.0 == "help" && p.2 == Some(0)));
        // Machines, action ids and remote paths: nothing to offer.
        assert!(
            !positional
                .iter()
                .any(|p| ["run", "result", "getfile"].contains(&p.0))
        );
    }

    #[test]
    fn descriptions_are_brief_and_quoted() {
        assert_eq!(brief("the cloud: {values}"), "the cloud");
        assert_eq!(
            brief("how to sign in: {values}; see below"),
            "how to sign in"
        );
        assert_eq!(brief("send it there; NO_PROXY lists"), "send it there");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(fish_quote(r"it's a \ "), r"'it\'s a \\ '");
        for (shell, text) in scripts() {
            assert!(!text.contains("{values}"), "{shell:?}");
            assert_eq!(text, script(shell), "{shell:?}: the same every time");
        }
    }

    #[test]
    fn zsh_is_an_autoloadable_function_and_bash_registers_one() {
        let [(_, bash), (_, zsh), (_, fish)] = scripts();
        assert!(zsh.starts_with("#compdef mdlr\n"));
        assert!(zsh.ends_with("    compdef _mdlr mdlr\nfi\n"));
        assert!(bash.ends_with("complete -F _mdlr mdlr\n"));
        assert!(fish.contains("complete -c mdlr -f\n"));
    }
}
