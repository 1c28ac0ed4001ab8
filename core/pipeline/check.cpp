#include "pipeline/check.h"

#include <memory>

#include "input/line_reader.h"
#include "store/capture_store.h"

namespace pipescope {

RunReport runCheck(const CheckOptions& options) {
    // Everything that can fail up front fails before any input is read or any file is written.
    std::vector<std::unique_ptr<LineReader>> readers;
    for (const auto& input : options.inputs)
        readers.push_back(std::make_unique<LineReader>(input, options.maxLineBytes));

    SchemaRegistry schemas;
    if (options.schemasDir) schemas = SchemaRegistry::loadDirectory(*options.schemasDir);

    std::optional<DedupWindow> window;
    std::uint64_t keysRestored = 0;
    if (options.dedupState && options.pipeline.dedup && std::filesystem::exists(*options.dedupState)) {
        window = DedupWindow::load(*options.dedupState, options.pipeline.dedupOptions);
        keysRestored = window->size();
    }

    std::unique_ptr<CaptureWriter> capture;
    // `check` acknowledges nothing to anyone and can be run again: no fsync per commit.
    if (options.capturePath)
        capture = std::make_unique<CaptureWriter>(*options.capturePath,
                                                  CaptureWriter::Options{.durability = Durability::Process});

    Pipeline pipeline(options.schemasDir ? &schemas : nullptr, capture.get(), options.pipeline, std::move(window));
    RunReport& report = pipeline.report();
    if (options.dedupState && options.pipeline.dedup) {
        report.dedup.statePath = options.dedupState->string();
        report.dedup.keysRestored = keysRestored;
    }
    if (options.schemasDir) {
        report.schemasDir = options.schemasDir->string();
        report.schemaCount = schemas.size();
    }
    if (options.capturePath) report.capturePath = options.capturePath->string();

    for (std::size_t i = 0; i < readers.size(); ++i) {
        LineReader& reader = *readers[i];
        InputStats stats;
        stats.path = options.inputs[i];
        const std::uint64_t linesBefore = report.lines;
        const std::uint64_t eventsBefore = report.events;
        try {
            while (auto line = reader.next()) {
                if (line->text.find_first_not_of(" \t\r\f\v") == std::string_view::npos && !line->oversize)
                    continue;
                Origin origin{options.inputs[i], line->number, -1};
                pipeline.processLine(line->text, origin, true, line->oversize, line->fullLength);
            }
        } catch (const InputError& e) {
            stats.error = e.what();
        }
        stats.compressed = reader.compressed();
        stats.lines = report.lines - linesBefore;
        stats.events = report.events - eventsBefore;
        report.files.push_back(std::move(stats));
        readers[i].reset(); // close each input as soon as it is done
    }
    pipeline.finish();
    if (options.dedupState && options.pipeline.dedup) pipeline.dedupWindow().save(*options.dedupState);
    if (capture) capture->close();
    return report;
}

} // namespace pipescope
