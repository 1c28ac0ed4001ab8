#pragma once
// The canonical event: the one shape the engine works on. Source formats decode into it
// (core/format/), destination adapters encode out of it. No vendor shape leaks past here.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <simdjson.h>

namespace pipescope {

enum class Stream : std::uint8_t { Unknown, Client, Server };

// Where the event's dedup id came from, in precedence order (highest first).
enum class IdSource : std::uint8_t { None, IdempotencyKey, PostHogUuid, SegmentMessageId, Canonical };

enum class Format : std::uint8_t { Auto, PostHog, Segment, Canonical };

std::string_view toString(Stream stream);
std::string_view toString(IdSource source);
std::string_view toString(Format format);
std::optional<Stream> parseStream(std::string_view text);
std::optional<Format> parseFormat(std::string_view text);

// Where an event entered: a file and line (stdin is "-"), an HTTP endpoint, or a Kafka
// topic:partition:offset. `index` is the position inside a batch, -1 for a line that is a
// single event.
struct Origin {
    std::string_view source;
    std::uint64_t line = 0;
    std::int32_t index = -1;
};

// Unix epoch milliseconds; nullopt when the field is absent or unparseable.
using Millis = std::optional<std::int64_t>;

// One decoded event. All views point into the parsed document of its batch and into the
// input bytes; an Event is valid only while the EventDecoder that produced it has not decoded
// the next line. Whoever keeps an event beyond that copies what it needs (see store/).
struct Event {
    std::string_view id;
    IdSource idSource = IdSource::None;
    std::string_view name;
    std::string_view distinctId;
    std::string_view anonymousId;
    std::string_view userId;
    // The id an alias event adds to the person of `distinctId`: PostHog `properties.alias` of
    // `$create_alias` / `$merge_dangerously`, Segment `previousId` of `alias`.
    std::string_view aliasId;
    Stream stream = Stream::Unknown;
    Format format = Format::Auto;
    Millis timestamp;
    Millis sentAt;
    Millis receivedAt;
    // PostHog's historical_migration: the body (a /batch envelope, or the event itself) is an
    // import of past events. PostHog routes such bodies to its historical ingestion and keeps the
    // flag out of the properties; so does this.
    bool historicalMigration = false;
    // The project the event belongs to: its PostHog token (api_key, token, $token, properties.token)
    // or Segment write key, else its envelope's, else the collector request's. Persons are per project.
    std::string_view project;
    Origin origin;
    // Always an object: the event's properties, or an empty object when it has none.
    simdjson::dom::element properties;
    // The whole event object as it was parsed (a batch element, or the line itself).
    simdjson::dom::element element;
    // The exact input bytes when the event is a whole line; empty for batch elements.
    std::string_view rawLine;
    // A batch element's exact bytes, its range in the line (a null view for a whole line).
    std::string_view rawElement;

    // The event's own bytes, verbatim: the line, or the batch element (minified from `element`
    // only for an event built without its bytes).
    std::string rawBytes() const;
};

// Parses an RFC 3339 / ISO 8601 timestamp ("2024-05-01T12:00:00.123Z", "+02:00" offsets,
// date-only) or an integer of epoch milliseconds given as text. nullopt when not a time.
Millis parseTimestamp(std::string_view text);
std::string formatTimestamp(std::int64_t epochMillis);

} // namespace pipescope
