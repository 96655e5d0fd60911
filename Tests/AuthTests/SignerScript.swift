import Foundation

/// Runs one of the real signers in Signers/ (dkimpy behind a small Python
/// script) and decodes the JSON it prints.
enum SignerScript {
    static func run<T: Decodable>(_ name: String, _ arguments: [String], as: T.Type) throws -> T {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Signers/\(name)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script.path] + arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return try JSONDecoder().decode(T.self, from: data)
    }
}
