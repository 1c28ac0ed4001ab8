// Identity graph: observe rate, link rate and memory per id on a generated product-analytics
// stream, against a reference that only interns the same ids in a std::unordered_map. Figures and
// ratios, never timed assertions.
//
//   bench_identity [--events N] [--repeat R] [--seed S]

#include "identity/identity_graph.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <malloc.h>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

using namespace pipescope;

namespace {

constexpr std::uint32_t kNone = 0xFFFFFFFFu;

struct Options {
    std::size_t events = 1'000'000;
    int repeat = 3;
    std::uint64_t seed = 42;
    bool personProperties = true;
};

// Ids and other texts live in one pool; events refer to them by index, so the timed loop only
// builds views.
struct GeneratedEvent {
    std::uint32_t name = 0;
    std::uint32_t distinctId = 0;
    std::uint32_t anonymousId = kNone;
    std::uint32_t userId = kNone;
    std::uint32_t aliasId = kNone;
    std::uint32_t session = kNone;
    std::uint32_t device = kNone;
    Stream stream = Stream::Unknown;
    bool isLink = false;
    // Person properties, as posthog-js and posthog-node send them: an index into the corpus's
    // update lists (kNone: none).
    std::uint32_t updates = kNone;
};

struct Corpus {
    std::vector<std::string> pool;
    std::vector<GeneratedEvent> events;
    std::string origins; // "bench.ndjson:<line>" back to back
    std::vector<std::uint32_t> originEnds;
    std::size_t linkEvents = 0;
    std::size_t plantedRefusals = 0;
    std::vector<std::vector<PersonPropertyUpdate>> updateLists;
    std::size_t propertyUpdates = 0;
};

std::uint32_t keep(Corpus& corpus, std::string text) {
    corpus.pool.push_back(std::move(text));
    return static_cast<std::uint32_t>(corpus.pool.size() - 1);
}

std::string uuidLike(std::mt19937_64& random) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text(36, '-');
    for (std::size_t i = 0; i < text.size(); ++i)
        if (i != 8 && i != 13 && i != 18 && i != 23) text[i] = kHex[random() & 15];
    return text;
}

// A day of a product: visitors browse anonymously on 1-3 devices, some log in ($identify), the
// backend sends events by user id (some users only ever appear there), CRM aliases, a few
// illegal ids, SDKs that keep the anonymous id after identify, a backend that spells some user ids
// differently, and a few alias attempts between two identified users (refused).
Corpus generate(const Options& options) {
    Corpus corpus;
    std::mt19937_64 random(options.seed);
    const auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(random) < p; };

    const std::uint32_t pageview = keep(corpus, "$pageview");
    const std::uint32_t clientTrack = keep(corpus, "button_clicked");
    const std::uint32_t serverTrack = keep(corpus, "order_paid");
    const std::uint32_t identify = keep(corpus, "$identify");
    const std::uint32_t alias = keep(corpus, "$create_alias");
    const std::uint32_t mergeDangerously = keep(corpus, "$merge_dangerously");
    const std::uint32_t undefinedId = keep(corpus, "undefined");

    struct Device {
        std::uint32_t anonymousId;
        std::uint32_t deviceId;
        std::uint32_t session = kNone;
        int sessionEventsLeft = 0;
        bool identified = false;
        bool keepsAnonymous = false; // an SDK that goes on sending the anonymous id after identify
    };
    struct User {
        std::uint32_t userId;
        std::uint32_t serverId; // what the backend calls the user: usually the same id
        std::vector<Device> devices;
        bool serverOnly = false;
        bool identifiedSomewhere = false;
    };
    const std::size_t userCount = std::max<std::size_t>(1, options.events / 40);
    std::vector<User> users(userCount);
    for (std::size_t u = 0; u < userCount; ++u) {
        User& user = users[u];
        user.userId = keep(corpus, (u % 5 == 0 ? "usr-" : "user_") + std::to_string(100000 + u));
        user.serverOnly = chance(0.05);
        // A backend that sends the bare database id while the frontend says "user_<id>".
        user.serverId = chance(0.01) ? keep(corpus, std::to_string(100000 + u)) : user.userId;
        const int devices = 1 + static_cast<int>(random() % 3);
        for (int d = 0; d < devices && !user.serverOnly; ++d) {
            Device device{keep(corpus, uuidLike(random)), kNone};
            device.deviceId = keep(corpus, uuidLike(random));
            device.keepsAnonymous = chance(0.03);
            user.devices.push_back(device);
        }
    }

    corpus.events.reserve(options.events);
    std::uniform_int_distribution<std::size_t> pickUser(0, userCount - 1);
    while (corpus.events.size() < options.events) {
        User& user = users[pickUser(random)];
        GeneratedEvent event;
        const double roll = std::uniform_real_distribution<double>(0, 1)(random);
        if (user.serverOnly || roll < 0.25) {
            event.name = serverTrack;
            event.distinctId = user.serverId;
            event.stream = Stream::Server;
            if (chance(0.01)) { // CRM alias of the user's record
                event.name = alias;
                event.aliasId = keep(corpus, "crm:" + std::to_string(random() % 10'000'000));
                event.isLink = true;
            } else if (chance(0.0008) && user.identifiedSomewhere) {
                // Support merges two accounts: refused unless done dangerously.
                const User& other = users[pickUser(random)];
                if (other.identifiedSomewhere && other.userId != user.userId) {
                    const bool dangerous = chance(0.2);
                    event.name = dangerous ? mergeDangerously : alias;
                    event.aliasId = other.userId;
                    event.isLink = true;
                    corpus.plantedRefusals += dangerous ? 0 : 1;
                }
            }
        } else {
            Device& device = user.devices[random() % user.devices.size()];
            if (device.sessionEventsLeft-- <= 0) {
                device.session = keep(corpus, uuidLike(random));
                device.sessionEventsLeft = 5 + static_cast<int>(random() % 30);
            }
            event.stream = Stream::Client;
            event.session = device.session;
            event.device = device.deviceId;
            event.name = chance(0.6) ? pageview : clientTrack;
            if (!device.identified && chance(0.06)) {
                event.name = identify;
                event.distinctId = event.userId = user.userId;
                event.anonymousId = device.anonymousId;
                event.isLink = true;
                device.identified = user.identifiedSomewhere = true;
            } else if (device.identified && !(device.keepsAnonymous && chance(0.3))) {
                event.distinctId = user.userId;
            } else {
                event.distinctId = device.anonymousId;
            }
            if (chance(0.001)) event.distinctId = undefinedId;
        }
        corpus.linkEvents += event.isLink;
        corpus.events.push_back(event);
    }

    // Person properties. Every posthog-js event carries $current_url and $browser, which PostHog
    // lifts into $set and their $initial_ forms into $set_once (personInitialAndUTMProperties); an
    // identify sets email and plan; a server event now and then changes the plan.
    static const char* const kUrls[] = {"https://example.com/", "https://example.com/pricing",
                                        "https://example.com/docs", "https://example.com/blog",
                                        "https://example.com/signup", "https://example.com/app"};
    for (const char* url : kUrls) {
        corpus.updateLists.push_back({{PropertyOp::SetOnce, "$initial_current_url", url},
                                      {PropertyOp::SetOnce, "$initial_browser", "\"Firefox\""},
                                      {PropertyOp::Set, "$current_url", url},
                                      {PropertyOp::Set, "$browser", "\"Firefox\""}});
    }
    const auto clientLists = static_cast<std::uint32_t>(corpus.updateLists.size());
    corpus.updateLists.push_back({{PropertyOp::SetOnce, "$initial_current_url", "\"https://example.com/\""},
                                  {PropertyOp::Set, "email", "\"someone@example.com\""},
                                  {PropertyOp::Set, "plan", "\"free\""},
                                  {PropertyOp::Set, "$current_url", "\"https://example.com/\""}});
    const std::uint32_t identifyList = clientLists;
    corpus.updateLists.push_back({{PropertyOp::Set, "plan", "\"pro\""}});
    corpus.updateLists.push_back({{PropertyOp::Set, "plan", "\"team\""}, {PropertyOp::Unset, "trial_ends", {}}});
    const std::uint32_t serverLists = identifyList + 1;
    for (GeneratedEvent& event : corpus.events) {
        if (!options.personProperties) break;
        if (event.stream == Stream::Client)
            event.updates = event.name == identify ? identifyList : static_cast<std::uint32_t>(random() % clientLists);
        else if (chance(0.1))
            event.updates = serverLists + static_cast<std::uint32_t>(random() % 2);
        if (event.updates != kNone) corpus.propertyUpdates += corpus.updateLists[event.updates].size();
    }
    // The URLs as JSON strings, which is what the extractor hands the graph.
    static std::vector<std::string> quoted;
    if (quoted.empty())
        for (const char* url : kUrls) quoted.push_back(std::string("\"") + url + "\"");
    for (std::uint32_t l = 0; l < clientLists; ++l) {
        corpus.updateLists[l][0].value = quoted[l];
        corpus.updateLists[l][2].value = quoted[l];
    }

    char buffer[32];
    for (std::size_t i = 0; i < corpus.events.size(); ++i) {
        corpus.origins += "bench.ndjson:";
        const auto end = std::to_chars(buffer, buffer + sizeof buffer, i + 1).ptr;
        corpus.origins.append(buffer, end);
        corpus.originEnds.push_back(static_cast<std::uint32_t>(corpus.origins.size()));
    }
    return corpus;
}

std::string_view text(const Corpus& corpus, std::uint32_t index) {
    return index == kNone ? std::string_view() : std::string_view(corpus.pool[index]);
}

enum class Feed { Everything, LinksOnly, WithoutCorrelations };

void feed(IdentityGraph& graph, const Corpus& corpus, Feed what) {
    Correlation correlations[2];
    for (std::size_t i = 0; i < corpus.events.size(); ++i) {
        const GeneratedEvent& generated = corpus.events[i];
        if (what == Feed::LinksOnly && !generated.isLink) continue;
        std::size_t correlationCount = 0;
        if (what != Feed::WithoutCorrelations) {
            if (generated.session != kNone)
                correlations[correlationCount++] = {"$session_id", text(corpus, generated.session)};
            if (generated.device != kNone)
                correlations[correlationCount++] = {"$device_id", text(corpus, generated.device)};
        }
        const std::uint32_t originBegin = i == 0 ? 0 : corpus.originEnds[i - 1];
        IdentityEvent event;
        event.seq = static_cast<std::int64_t>(i + 1);
        event.name = text(corpus, generated.name);
        event.distinctId = text(corpus, generated.distinctId);
        event.anonymousId = text(corpus, generated.anonymousId);
        event.userId = text(corpus, generated.userId);
        event.aliasId = text(corpus, generated.aliasId);
        event.stream = generated.stream;
        event.timeMillis = 1714564800000 + static_cast<std::int64_t>(i) * 50;
        event.origin =
            std::string_view(corpus.origins).substr(originBegin, corpus.originEnds[i] - originBegin);
        event.correlations = std::span<const Correlation>(correlations, correlationCount);
        if (generated.updates != kNone) event.personUpdates = corpus.updateLists[generated.updates];
        graph.observe(event);
    }
}

// The floor: one hash-map lookup (and insert when new) per id an event carries.
std::size_t internReference(std::unordered_map<std::string, std::uint32_t>& ids, const Corpus& corpus) {
    for (const GeneratedEvent& generated : corpus.events) {
        for (std::uint32_t index : {generated.distinctId, generated.isLink ? generated.anonymousId : kNone,
                                    generated.isLink ? generated.aliasId : kNone}) {
            if (index == kNone) continue;
            const std::string_view id = text(corpus, index);
            if (isIllegalDistinctId(id)) continue;
            auto found = ids.find(std::string(id));
            if (found == ids.end()) ids.emplace(std::string(id), static_cast<std::uint32_t>(ids.size()));
        }
    }
    return ids.size();
}

double seconds(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

Options parseArguments(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string_view argument = argv[i];
        const bool hasValue = i + 1 < argc;
        if (argument == "--events" && hasValue)
            options.events = std::strtoull(argv[++i], nullptr, 10);
        else if (argument == "--repeat" && hasValue)
            options.repeat = std::max(1, std::atoi(argv[++i]));
        else if (argument == "--seed" && hasValue)
            options.seed = std::strtoull(argv[++i], nullptr, 10);
        else if (argument == "--no-person-properties")
            options.personProperties = false;
        else {
            std::fprintf(stderr, "usage: bench_identity [--events N] [--repeat R] [--seed S] [--no-person-properties]\n"
                                 "  person properties are on by default: posthog-js's lifted $current_url and\n"
                                 "  $browser on every client event, email and plan on identify, plan changes on\n"
                                 "  one server event in ten\n");
            std::exit(argument == "--help" ? 0 : 2);
        }
    }
    return options;
}

} // namespace

int main(int argc, char** argv) {
    const Options options = parseArguments(argc, argv);
    const Corpus corpus = generate(options);
    std::printf("bench_identity: %zu events (%zu link events, %zu planted refusals, %zu person-property updates), "
                "seed %llu, best of %d\n",
                corpus.events.size(), corpus.linkEvents, corpus.plantedRefusals, corpus.propertyUpdates,
                static_cast<unsigned long long>(options.seed), options.repeat);

    double observeBest = 1e300, finishBest = 1e300, linksBest = 1e300, referenceBest = 1e300;
    double graphBytes = 0, idsOnlyBytes = 0, referenceBytes = 0;
    IdentitySummary summary;
    std::size_t referenceIds = 0;
    for (int run = 0; run < options.repeat; ++run) {
        const std::size_t before = mallinfo2().uordblks;
        {
            IdentityGraph graph;
            auto start = std::chrono::steady_clock::now();
            feed(graph, corpus, Feed::Everything);
            observeBest = std::min(observeBest, seconds(start));
            start = std::chrono::steady_clock::now();
            graph.finish();
            finishBest = std::min(finishBest, seconds(start));
            graphBytes = static_cast<double>(mallinfo2().uordblks - before);
            summary = graph.summary();
        }
        {
            IdentityGraph graph;
            const auto start = std::chrono::steady_clock::now();
            feed(graph, corpus, Feed::LinksOnly);
            linksBest = std::min(linksBest, seconds(start));
        }
        if (run == 0) {
            const std::size_t idsBefore = mallinfo2().uordblks;
            IdentityGraph graph;
            feed(graph, corpus, Feed::WithoutCorrelations);
            graph.finish();
            idsOnlyBytes = static_cast<double>(mallinfo2().uordblks - idsBefore);
        }
        const std::size_t referenceBefore = mallinfo2().uordblks;
        {
            std::unordered_map<std::string, std::uint32_t> ids;
            const auto start = std::chrono::steady_clock::now();
            referenceIds = internReference(ids, corpus);
            referenceBest = std::min(referenceBest, seconds(start));
            referenceBytes = static_cast<double>(mallinfo2().uordblks - referenceBefore);
        }
    }

    const double events = static_cast<double>(corpus.events.size());
    const double ids = static_cast<double>(summary.ids);
    std::printf("BENCH identity_observe   events=%zu best_s=%.4f events_per_s=%.0f\n", corpus.events.size(),
                observeBest, events / observeBest);
    std::printf(
        "BENCH identity_links     links=%zu best_s=%.4f links_per_s=%.0f   # a graph fed only link events\n",
        corpus.linkEvents, linksBest, static_cast<double>(corpus.linkEvents) / linksBest);
    std::printf("BENCH identity_finish    best_s=%.4f   # split, orphan and probable-same-user passes\n",
                finishBest);
    std::printf("BENCH reference_intern   events=%zu best_s=%.4f events_per_s=%.0f   # "
                "unordered_map<string,uint32>\n",
                corpus.events.size(), referenceBest, events / referenceBest);
    std::printf(
        "GRAPH ids=%llu persons=%llu identified=%llu links=%llu merges=%llu correlation_values=%llu\n",
        static_cast<unsigned long long>(summary.ids), static_cast<unsigned long long>(summary.persons),
        static_cast<unsigned long long>(summary.identifiedPersons),
        static_cast<unsigned long long>(summary.links), static_cast<unsigned long long>(summary.merges),
        static_cast<unsigned long long>(summary.correlationValues));
    std::printf("PROPERTIES persons_with_properties=%llu updates=%zu\n",
                static_cast<unsigned long long>(summary.personsWithProperties), corpus.propertyUpdates);
    std::printf("ISSUES");
    for (std::size_t k = 0; k < kIdentityIssueKindCount; ++k)
        std::printf(" %s=%llu", std::string(toString(static_cast<IdentityIssueKind>(k))).c_str(),
                    static_cast<unsigned long long>(summary.issues[k]));
    std::printf("\n");
    std::printf("MEMORY graph_bytes_per_id=%.1f (all state / ids)  without_correlations=%.1f  "
                "per_correlation_value=%.1f  reference_bytes_per_id=%.1f (ids=%zu)\n",
                graphBytes / ids, idsOnlyBytes / ids,
                (graphBytes - idsOnlyBytes) / static_cast<double>(summary.correlationValues),
                referenceBytes / static_cast<double>(referenceIds), referenceIds);
    std::printf("RATIO observe_time/reference_time=%.2f graph_bytes/reference_bytes=%.2f "
                "graph_without_correlations/reference_bytes=%.2f\n",
                observeBest / referenceBest, graphBytes / referenceBytes, idsOnlyBytes / referenceBytes);
    if (summary.issueCount(IdentityIssueKind::MergeRefused) != corpus.plantedRefusals)
        std::printf(
            "NOTE merge_refused=%llu differs from planted refusals=%zu (a pair may already be one person)\n",
            static_cast<unsigned long long>(summary.issueCount(IdentityIssueKind::MergeRefused)),
            corpus.plantedRefusals);
    return 0;
}
