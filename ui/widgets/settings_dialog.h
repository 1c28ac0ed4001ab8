#pragma once
// Settings: the pipeline's configuration as a form (collector address and port, schemas folder,
// unplanned policy, dedup, correlation keys, durability, destinations as JSON), validated with
// the same parser as `pipescope-cli run --config` — an error names its field and the field is
// marked — and saved as a pipescope.json the window starts from next time. Keys the form does not
// show (streams, tokens, limits) are kept as they were in the file.

#include <QDialog>

#include <nlohmann/json.hpp>

#include "pipeline/run.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QSpinBox;

namespace pipescope {

class SettingsDialog : public QDialog {
    Q_OBJECT

public:
    // `file`: the pipescope.json to edit (created when missing).
    explicit SettingsDialog(const QString& file, QWidget* parent = nullptr);

    // The form as a config document; check() parses it like `run --config` would.
    nlohmann::ordered_json document() const;
    // Empty when valid; otherwise the parser's message, with the field marked in the form.
    QString check();
    // Checks and writes the file; false (the error shown) when invalid or unwritable.
    bool save();
    const QString& file() const { return m_file; }
    // The parsed config of the last successful check().
    const RunConfig& config() const { return m_config; }

    QSpinBox* portField() const { return m_port; }
    QLineEdit* dedupWindowField() const { return m_dedupWindow; }
    QPlainTextEdit* destinationsField() const { return m_destinations; }
    QLabel* errorLabel() const { return m_error; }

    void accept() override;

private:
    void load();
    void mark(QWidget* field);

    QString m_file;
    nlohmann::ordered_json m_original = nlohmann::ordered_json::object();
    RunConfig m_config;
    QLineEdit* m_address;
    QSpinBox* m_port;
    QLineEdit* m_schemas;
    QComboBox* m_unplanned;
    QCheckBox* m_dedupEnabled;
    QLineEdit* m_dedupWindow;
    QComboBox* m_dedupMode;
    QLineEdit* m_correlate;
    QComboBox* m_durability;
    QPlainTextEdit* m_destinations;
    QLabel* m_error;
    QList<QWidget*> m_fields;
};

} // namespace pipescope
