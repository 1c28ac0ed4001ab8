#pragma once
// Destination adapters: the vendor shapes events leave in. The canonical event goes out of the
// engine here and only here. Properties are spliced in as the text the store holds, so numbers,
// key order and `$lib`-like properties reach the destination exactly as they came in.

#include "route/destination.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pipescope {

// {"api_key": KEY, "batch": [{"event","distinct_id","properties","timestamp","uuid"}...], "sent_at"}.
// Events that came from another format get the properties PostHog reads the identity from when
// they are missing: `$anon_distinct_id` on `$identify`, `alias` on `$create_alias`.
std::string encodePostHogBatch(std::span<const OutgoingEvent> events, std::string_view apiKey,
                               std::int64_t sentAtMillis);

// {"batch": [{"type", "event" (track), "userId"/"anonymousId", "properties"|"traits", "timestamp",
// "messageId", "previousId" (alias), "groupId" (group)}...], "sentAt"}.
std::string encodeSegmentBatch(std::span<const OutgoingEvent> events, std::int64_t sentAtMillis);

// {"events": [canonical event objects]}.
std::string encodeWebhookBody(std::span<const OutgoingEvent> events);

// One canonical event object (the shape `pipescope-cli export` writes and the canonical source
// format reads): seq, id, id_source, name, distinct_id, anonymous_id, user_id, alias_id, stream,
// format, timestamp (RFC 3339), properties. Empty optional fields are left out.
std::string encodeCanonicalEvent(const OutgoingEvent& event);

// Segment message type for a canonical name: $pageview→page, $screen→screen, $identify→identify,
// $create_alias→alias, $groupidentify→group, anything else→track.
std::string_view segmentTypeOf(std::string_view eventName);

// The event's id when it is a UUID; otherwise a UUID derived from the id (or from the seq when
// the event has none), stable across retries and restarts so the receiver can deduplicate.
std::string stableEventUuid(const OutgoingEvent& event);

// True when `text` is a JSON object (what a destination may splice in as properties).
bool isJsonObjectText(std::string_view text);

// A destination's event filter: names (exact, or a prefix ending in '*') and streams; an empty
// list accepts everything.
class EventFilter {
public:
    EventFilter(std::vector<std::string> names, std::vector<Stream> streams);
    bool accepts(const OutgoingEvent& event) const;

private:
    std::vector<std::string> m_exactNames;
    std::vector<std::string> m_namePrefixes;
    std::vector<Stream> m_streams;
};

} // namespace pipescope
