//! The live response library: scripts and files that RunScript and PutFile use.

use serde::{Deserialize, Serialize};

use crate::api::{ApiCall, Client, Listed, NotFound};
use crate::error::{Error, Result};
use crate::http::Method;
use crate::ids::{check_library_name, check_library_upload_name};

/// A file in the live response library.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LibraryFile {
    /// Its name, as RunScript and PutFile refer to it.
    #[serde(default)]
    pub file_name: Option<String>,
    /// SHA-256 of its content, hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// When it was uploaded.
    #[serde(default)]
    pub creation_time: Option<String>,
    /// When it last changed.
    #[serde(default)]
    pub last_updated_time: Option<String>,
    /// Who uploaded it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Whether the script takes parameters.
    #[serde(default)]
    pub has_parameters: Option<bool>,
    /// What its parameters are.
    #[serde(default)]
    pub parameters_description: Option<String>,
}

/// A file to upload to the library.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LibraryUpload {
    /// The name it gets in the library.
    pub file_name: String,
    /// Its content.
    pub content: Vec<u8>,
    /// What it is for.
    pub description: String,
    /// What its parameters are; setting it marks the script as taking parameters.
    pub parameters_description: Option<String>,
    /// Replace a file of the same name.
    pub override_if_exists: bool,
}

impl LibraryUpload {
    /// The largest file the API takes into the library, in bytes. Microsoft's page on the
    /// upload ("Upload files to the live response library") says "File max size
    /// limitation is 20MB" without saying which megabyte; this is the larger reading,
    /// 20 MiB (20 971 520 bytes), so that a file the service would take is never
    /// refused here. (The portal takes up to 250 MB; US Government tenants may have a
    /// lower limit, which only the service can tell.)
    pub const MAX_SIZE: u64 = 20 * 1024 * 1024;

    /// Checks what the service would refuse in an upload of `size` bytes as
    /// `file_name`, before anything is sent: a name with characters other than ASCII
    /// letters, digits, `-`, `_` and `.` (the message suggests one that would do, see
    /// [`crate::ids::library_name_suggestion`]), or a file over [`Self::MAX_SIZE`].
    /// [`Client::upload_library_file`] checks this itself; a program that reads the
    /// file can call it first with the file's length, and read nothing too large.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`], saying the limit.
    pub fn check(file_name: &str, size: u64) -> Result<()> {
        check_library_upload_name(file_name)?;
        if size > Self::MAX_SIZE {
            return Err(Error::InvalidArgument {
                message: format!(
                    "{file_name} is {:.1} MB ({size} bytes): the API takes library files \
                     up to 20 MB ({} bytes); the Defender portal takes up to 250 MB",
                    size as f64 / (1024.0 * 1024.0),
                    Self::MAX_SIZE
                ),
            });
        }
        Ok(())
    }

    /// An upload of `content` as `file_name`, with no description, not overriding.
    pub fn new(file_name: impl Into<String>, content: Vec<u8>) -> LibraryUpload {
        LibraryUpload {
            file_name: file_name.into(),
            content,
            description: String::new(),
            parameters_description: None,
            override_if_exists: false,
        }
    }

    /// The `multipart/form-data` body and its boundary.
    fn multipart(&self, boundary: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.content.len() + 1024);
        let name = self.file_name.replace(['"', '\r', '\n'], "_");
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&self.content);
        body.extend_from_slice(b"\r\n");
        let has_parameters = self.parameters_description.is_some().to_string();
        let fields = [
            ("Description", self.description.as_str()),
            (
                "ParametersDescription",
                self.parameters_description.as_deref().unwrap_or(""),
            ),
            ("HasParameters", has_parameters.as_str()),
            (
                "OverrideIfExists",
                if self.override_if_exists {
                    "true"
                } else {
                    "false"
                },
            ),
        ];
        for (field, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    }
}

impl Listed for LibraryFile {
    fn list_id(&self) -> Option<&str> {
        self.file_name.as_deref()
    }
}

impl Client {
    /// `GET /api/libraryfiles`: every file in the live response library.
    pub fn library_files(&self) -> Result<Vec<LibraryFile>> {
        self.get_list("libraryfiles", "library list", usize::MAX, NotFound::Error)
    }

    /// `POST /api/libraryfiles`: uploads a file to the library.
    ///
    /// # Errors
    ///
    /// Before anything is sent, [`Error::InvalidArgument`] for a name or a size the
    /// service would refuse ([`LibraryUpload::check`]).
    pub fn upload_library_file(&self, upload: &LibraryUpload) -> Result<LibraryFile> {
        LibraryUpload::check(&upload.file_name, upload.content.len() as u64)?;
        let boundary = format!("mdlr-{:016x}", crate::ids::random_u64());
        let url = self.endpoints().api_url("libraryfiles");
        let mut call = ApiCall::json(Method::Post, url, upload.multipart(&boundary));
        call.content_type = Some(format!("multipart/form-data; boundary={boundary}"));
        let resp = self.call(&call)?;
        self.read_json(resp, "library file")
    }

    /// `DELETE /api/libraryfiles/{name}`: removes a file from the library.
    pub fn delete_library_file(&self, file_name: &str) -> Result<()> {
        check_library_name(file_name)?;
        let url = self
            .endpoints()
            .api_url(&format!("libraryfiles/{}", crate::encode::query(file_name)));
        let mut call = ApiCall::get(url);
        call.method = Method::Delete;
        self.call(&call)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_body() {
        let mut u = LibraryUpload::new("a\"b.ps1", b"Write-Output 1".to_vec());
        u.description = "d".into();
        u.parameters_description = Some("-x".into());
        let body = String::from_utf8(u.multipart("B")).expect("text");
        assert!(body.starts_with(
            "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a_b.ps1\"\r\n"
        ));
        assert!(body.contains("\r\n\r\nWrite-Output 1\r\n--B\r\n"));
        assert!(body.contains("name=\"HasParameters\"\r\n\r\ntrue\r\n"));
        assert!(body.contains("name=\"OverrideIfExists\"\r\n\r\nfalse\r\n"));
        assert!(body.ends_with("--B--\r\n"));
    }

    #[test]
    fn upload_checks() {
        assert!(LibraryUpload::check("tool.exe", LibraryUpload::MAX_SIZE).is_ok());
        assert!(LibraryUpload::check("tool.exe", 0).is_ok());
        let e = LibraryUpload::check("tool.exe", LibraryUpload::MAX_SIZE + 1)
            .err()
            .map(|e| (e.kind(), e.to_string()));
        assert_eq!(
            e,
            Some((
                crate::ErrorKind::InvalidInput,
                "tool.exe is 20.0 MB (20971521 bytes): the API takes library files up to \
                 20 MB (20971520 bytes); the Defender portal takes up to 250 MB"
                    .to_owned()
            ))
        );
        let e = LibraryUpload::check("my tool.exe", 1)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.ends_with("; my_tool.exe would do")),
            "{e:?}"
        );
    }
}
