//! The MachineAction decoder (`serde_json` into `mdlr::MachineAction`, as the client
//! decodes replies) and `result_type` on what it decoded: no panic whatever the reply,
//! and a decoded action survives a round trip through its own JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mdlr::{CommandStatus, Error, MachineAction};

fuzz_target!(|data: &[u8]| {
    let Ok(action) = serde_json::from_slice::<MachineAction>(data) else {
        return;
    };
    let count = action.commands.len() as u32;
    let listed = action.commands.iter().filter_map(|c| c.index);
    let indexes = [
        0,
        1,
        count.saturating_sub(1),
        count,
        count.saturating_add(1),
        u32::MAX,
    ];
    for index in indexes.into_iter().chain(listed) {
        let entry = action.command(index);
        match action.result_type(index) {
            Ok(_) => {
                let status = entry.and_then(|e| e.command_status.clone());
                assert_eq!(
                    status,
                    Some(CommandStatus::Completed),
                    "a result of {entry:?}"
                );
            }
            Err(Error::NoSuchCommand { count: c, .. }) => {
                assert!(entry.is_none());
                assert_eq!(c, action.commands.len());
            }
            Err(e) => {
                assert!(entry.is_some() || action.commands.is_empty(), "{e}");
                let _ = e.to_string();
            }
        }
    }
    let _ = action.status_or_unknown().is_terminal();
    let again = serde_json::to_vec(&action).expect("an action serialises");
    let back: MachineAction = serde_json::from_slice(&again).expect("its own JSON decodes");
    assert_eq!(back, action, "changed on a round trip through {again:?}");
});
