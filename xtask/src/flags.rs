//! The options of the bench tasks: `--key value` or `--key=value`, and switches.

use std::path::{Path, PathBuf};

/// A task's options, read one at a time:
///
/// ```ignore
/// let mut flags = Flags::new(args, USAGE);
/// while let Some((key, switch)) = flags.next() {
///     match key {
///         "--no-write" if switch => options.write = false,
///         "--mdlr" => options.mdlr = Some(PathBuf::from(flags.value()?)),
///         _ => return Err(flags.unknown()),
///     }
/// }
/// ```
pub struct Flags<'a> {
    rest: std::slice::Iter<'a, &'a str>,
    usage: &'a str,
    /// The option just read, whole; its name; what followed its `=`.
    arg: &'a str,
    key: &'a str,
    inline: Option<&'a str>,
}

impl<'a> Flags<'a> {
    /// `args`, the task's options; `usage`, added to every error.
    pub fn new(args: &'a [&'a str], usage: &'a str) -> Self {
        Flags {
            rest: args.iter(),
            usage,
            arg: "",
            key: "",
            inline: None,
        }
    }

    /// The next option's name (`--rounds` of `--rounds=3`), and whether it came
    /// without `=value`, as a switch must; `None` after the last.
    pub fn next(&mut self) -> Option<(&'a str, bool)> {
        let arg = *self.rest.next()?;
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg, None),
        };
        (self.arg, self.key, self.inline) = (arg, key, inline);
        Some((key, inline.is_none()))
    }

    /// The value of the option just read: what followed its `=`, else the next
    /// argument.
    pub fn value(&mut self) -> Result<String, String> {
        match self.inline {
            Some(v) => Ok(v.to_owned()),
            None => self
                .rest
                .next()
                .map(|v| (*v).to_owned())
                .ok_or_else(|| format!("{} needs a value\n{}", self.key, self.usage)),
        }
    }

    /// The error for the option just read, which the task does not have.
    pub fn unknown(&self) -> String {
        format!("unknown option {}\n{}", self.arg, self.usage)
    }
}

/// The command line that produced a task's figures, as BENCHMARKS.md shows it: `task`
/// and its options but `--write`, the default.
pub fn command_line(task: &str, args: &[&str]) -> String {
    std::iter::once(task)
        .chain(args.iter().copied().filter(|a| *a != "--write"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `mdlr` binary to benchmark: `given` (`--mdlr PATH`), else the release build.
pub fn release_mdlr(root: &Path, given: Option<&PathBuf>) -> Result<PathBuf, String> {
    match given {
        Some(path) => Ok(path.clone()),
        None => {
            println!("building mdlr (release) ...");
            crate::build_mdlr(root, true)
        }
    }
}
