// pipescope: the desktop inspector. Parses the command line and shows the window (ui/).
//
//   pipescope                          the embedded default: a live pipeline (collector on
//                                      127.0.0.1:8089, a new capture in the user's data folder)
//   pipescope FILE.pipescope           opens a capture read-only, as Wireshark opens a pcap
//   pipescope --config pipescope.json  starts the configured pipeline
#include <QApplication>
#include <QCommandLineParser>
#include <QMessageBox>

#include <iostream>

#include "main_window.h"
#include "pipeline/run.h"

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setOrganizationName(QStringLiteral("Pipescope"));
    QApplication::setApplicationName(QStringLiteral("pipescope"));
    QApplication::setApplicationDisplayName(QStringLiteral("Pipescope"));
    QApplication::setApplicationVersion(QStringLiteral(PIPESCOPE_VERSION));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral(
        "The Pipescope inspector. Without arguments it starts the local pipeline (collector on "
        "127.0.0.1:8089, a new capture in the user's data folder); with a capture file it opens it read-only."));
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption config(QStringLiteral("config"), QStringLiteral("Start the pipeline configured in FILE."),
                                    QStringLiteral("FILE"));
    const QCommandLineOption port(QStringLiteral("port"), QStringLiteral("Collector port (0: any free port)."),
                                  QStringLiteral("N"));
    const QCommandLineOption schemas(QStringLiteral("schemas"), QStringLiteral("Schemas folder (schemas/<event>/<version>.json)."),
                                     QStringLiteral("DIR"));
    const QCommandLineOption capture(QStringLiteral("capture"), QStringLiteral("Capture file of the live pipeline (continued if it exists)."),
                                     QStringLiteral("FILE"));
    parser.addOptions({config, port, schemas, capture});
    parser.addPositionalArgument(QStringLiteral("capture"), QStringLiteral("A .pipescope capture to open read-only."),
                                 QStringLiteral("[FILE.pipescope]"));
    parser.process(app);
    const QStringList files = parser.positionalArguments();
    auto usage = [](const QString& message) {
        std::cerr << "pipescope: " << message.toStdString() << "\n";
        return 64;
    };
    if (files.size() > 1) return usage(QStringLiteral("give at most one capture file"));
    if (!files.isEmpty() && (parser.isSet(config) || parser.isSet(port) || parser.isSet(capture) || parser.isSet(schemas)))
        return usage(QStringLiteral("a capture file opens read-only: --config, --port, --capture and --schemas start a live pipeline"));

    pipescope::MainWindow window;
    window.show();
    if (!files.isEmpty()) {
        window.openCapture(files.front()); // an error is shown in the window
        return app.exec();
    }
    pipescope::RunConfig runConfig;
    try {
        runConfig = parser.isSet(config) ? pipescope::loadRunConfig(parser.value(config).toStdString())
                                         : pipescope::MainWindow::defaultConfig();
    } catch (const std::exception& e) {
        QMessageBox::critical(&window, QStringLiteral("Pipescope"), QString::fromStdString(e.what()));
        return usage(QString::fromStdString(e.what()));
    }
    if (parser.isSet(port)) {
        bool ok = false;
        const int value = parser.value(port).toInt(&ok);
        if (!ok || value < 0 || value > 65535) return usage(QStringLiteral("--port: expected 0..65535, got \"%1\"").arg(parser.value(port)));
        runConfig.collector.port = static_cast<std::uint16_t>(value);
    }
    if (parser.isSet(schemas)) runConfig.schemasDir = parser.value(schemas).toStdString();
    if (parser.isSet(capture)) runConfig.capturePath = parser.value(capture).toStdString();
    window.startLive(runConfig); // a port in use is said in the window, with another offered
    return app.exec();
}
