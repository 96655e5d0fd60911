import Foundation

/// The messages in the paths an admin gives `mxgate learn`: single message
/// files, Maildirs (their cur and new), mbox files (split at "From " lines,
/// ">From " unquoted), and folders of any of these, walked in name order.
public enum MessageSource {
    public struct Item: Sendable {
        /// The file, with "#N" for the Nth message of an mbox.
        public var name: String
        public var bytes: [UInt8]
    }

    /// Calls `body` for each message; a path that cannot be read is reported through `problem` and skipped.
    public static func each(_ paths: [String], problem: (String) -> Void, _ body: (Item) throws -> Void) rethrows {
        for path in paths { try visit(path, depth: 0, problem: problem, body) }
    }

    private static func visit(_ path: String, depth: Int, problem: (String) -> Void, _ body: (Item) throws -> Void) rethrows {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            problem("\(path): no such file or folder")
            return
        }
        if isDir.boolValue {
            guard depth < 8 else { return }
            let fm = FileManager.default
            let isMaildir = ["cur", "new"].contains { fm.fileExists(atPath: (path as NSString).appendingPathComponent($0)) }
            let names: [String]
            if isMaildir {
                names = ["cur", "new"].filter { fm.fileExists(atPath: (path as NSString).appendingPathComponent($0)) }
            } else {
                guard let list = try? fm.contentsOfDirectory(atPath: path) else {
                    problem("\(path): cannot be listed")
                    return
                }
                names = list.filter { !$0.hasPrefix(".") && $0 != "tmp" }.sorted()
            }
            for n in names { try visit((path as NSString).appendingPathComponent(n), depth: depth + 1, problem: problem, body) }
            return
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            problem("\(path): cannot be read")
            return
        }
        let bytes = [UInt8](data)
        if bytes.starts(with: Array("From ".utf8)) {
            for (i, m) in splitMbox(bytes).enumerated() { try body(Item(name: "\(path)#\(i + 1)", bytes: m)) }
        } else {
            try body(Item(name: path, bytes: bytes))
        }
    }

    /// mboxrd: a line starting "From " begins a message; ">From " (any
    /// number of >) in a body loses one >.
    static func splitMbox(_ b: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var current: [UInt8] = []
        var started = false
        var i = 0
        while i < b.count {
            var j = i
            while j < b.count && b[j] != 10 { j += 1 }
            let line = b[i..<min(j + 1, b.count)]
            if line.starts(with: Array("From ".utf8)) {
                if started { out.append(current) }
                current = []
                started = true
            } else if started {
                var k = line.startIndex
                while k < line.endIndex && line[k] == 62 { k += 1 }
                if k > line.startIndex && line[k...].starts(with: Array("From ".utf8)) {
                    current += line.dropFirst()
                } else {
                    current += line
                }
            }
            i = j + 1
        }
        if started { out.append(current) }
        return out
    }
}
