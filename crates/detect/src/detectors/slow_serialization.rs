//! `slow-serialization`: encoding responses (or decoding requests) takes much of the busy time.

use chokepoint_evidence::Resource;

use crate::detectors::percent;
use crate::finding::Basis;
use crate::profile::{Category, ProfileView};
use crate::registry::{Conclusion, Detector, Reads, detector};
use crate::stack::Framework;

detector! {
    /// # What it detects
    ///
    /// A profile in which serialization — `json`, `simplejson`, `pickle`, `msgpack`, `pydantic`
    /// and `pydantic_core`, `marshmallow`, Django REST framework's serializers, fields and
    /// renderers, FastAPI's `jsonable_encoder` — takes at least 25 % of the busy time (samples of
    /// threads not waiting for work), on at least 20 samples. The finding names the application
    /// line that calls it and the hottest serialization frames.
    ///
    /// # Why it limits throughput
    ///
    /// Serialization is CPU work on the request path, done while holding the GIL: every
    /// millisecond of it is a millisecond no other request of the process runs. Pretty-printing
    /// (`indent`), `sort_keys`, `default=` fallbacks and validation of large nested documents
    /// multiply it.
    ///
    /// # Evidence used
    ///
    /// A profile (`chokepoint profile`: py-spy, speedscope, pprof, cProfile). A C serializer
    /// (`orjson`, `ujson`, the C part of `json`) has no Python frames: a sampler shows the line
    /// that calls it, and the category is read from that line's text (`json.dumps(`,
    /// `.model_dump(`) when the source is at hand; the finding says so.
    ///
    /// # Known false positives
    ///
    /// A service whose job is serialization (an export endpoint) — then it is the work, not
    /// waste; the fix is to cache or stream. The saving assumes a faster library (orjson is
    /// about 5× faster than `json` on typical documents); measure with `chokepoint compare`.
    ///
    /// # Typical fix
    ///
    /// `orjson.dumps`, in the framework's terms when the profile shows it (FastAPI:
    /// `default_response_class=ORJSONResponse`; Flask: a response of `orjson.dumps`; Django REST
    /// framework: an orjson renderer); drop `indent`/`sort_keys` on hot paths; serialize once and cache
    /// documents that do not change; return fewer fields.
    pub(crate) struct SlowSerialization {
        id: SlowSerialization,
        summary: "serialization takes much of the busy time",
        reads: [Reads::Profile("serialization frames")],
        same_cause: [],
    }
}

/// Share of the busy time that is flagged.
const MIN_SHARE: f64 = 0.25;
/// What a faster serializer removes of it: orjson at about 5× the speed of `json`.
const SAVED_SHARE: f64 = 0.8;

impl Detector for SlowSerialization {
    fn check_profile(&self, profile: &ProfileView<'_>) -> Option<Conclusion> {
        let hot = profile.hot(Category::Serialization, MIN_SHARE)?;
        let source = hot.place().source.as_deref().unwrap_or("");
        let mut extras = Vec::new();
        if source.contains("indent=") {
            extras.push("drop `indent=` (pretty-printing)");
        }
        if source.contains("sort_keys") {
            extras.push("drop `sort_keys=True`");
        }
        let title = format!(
            "Serialization takes {} of the busy time ({:.2} s), called from {}",
            percent(hot.share),
            hot.seconds,
            hot.place()
        );
        let fix = format!(
            "At {}: serialize with `orjson.dumps(…)` ({}){}; \
             serialize once and cache a document that does not change between requests.",
            hot.place_text(),
            match profile.stack.framework {
                Some(Framework::FastApi) => "FastAPI: `default_response_class=ORJSONResponse`",
                Some(Framework::Flask) =>
                    "Flask: `Response(orjson.dumps(data), mimetype=\"application/json\")`, or an orjson `app.json` provider",
                Some(Framework::DjangoRest) =>
                    "Django REST framework: an orjson renderer in `DEFAULT_RENDERER_CLASSES`",
                Some(Framework::Django) =>
                    "Django: `HttpResponse(orjson.dumps(data), content_type=\"application/json\")`",
                _ => "FastAPI: `ORJSONResponse`; Flask and Django: a response of `orjson.dumps(data)`",
            },
            if extras.is_empty() {
                String::new()
            } else {
                format!(", and {}", extras.join(" and "))
            }
        );
        Some(
            hot.conclude(Resource::Cpu, Basis::Assumed, SAVED_SHARE, title, fix)
                .assume_more("orjson serializes the same document about 5× faster than json: the fix removes 80 % of this time"),
        )
    }
}
