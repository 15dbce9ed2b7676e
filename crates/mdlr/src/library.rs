//! The live response library: scripts and files that RunScript and PutFile use.

use serde::{Deserialize, Serialize};

use crate::api::{ApiCall, Client};
use crate::error::Result;
use crate::http::Method;
use crate::ids::check_library_name;

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

impl Client {
    /// `GET /api/libraryfiles`: every file in the live response library.
    pub fn library_files(&self) -> Result<Vec<LibraryFile>> {
        self.get_list("libraryfiles", "library list", usize::MAX)
    }

    /// `POST /api/libraryfiles`: uploads a file to the library.
    pub fn upload_library_file(&self, upload: &LibraryUpload) -> Result<LibraryFile> {
        check_library_name(&upload.file_name)?;
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
}
