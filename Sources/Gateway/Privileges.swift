import Foundation
import NIOCore

/// Starting as root to bind port 25, then running as `[server] user`.
///
/// Changing the user inside a running Swift process is not enough: the
/// main thread sits in the dispatch main loop where glibc's per-thread
/// credential broadcast does not reach it, and it would stay root. So the
/// root process binds the listeners, hands the state folders to the user,
/// and replaces itself (execve) with `setpriv` starting mxgate again as
/// that user from the first instruction, the bound sockets inherited
/// (MXGATE_LISTEN_FDS). No thread of the serving process ever ran as root.
public enum Privileges {
    static let environmentKey = "MXGATE_LISTEN_FDS"

    public enum Failure: Error, CustomStringConvertible {
        case bind(String)
        case exec(String)
        public var description: String {
            switch self {
            case .bind(let s): return "cannot bind \(s)"
            case .exec(let s): return "cannot start as the unprivileged user: \(s)"
            }
        }
    }

    /// True when this process should bind and become `[server] user` now.
    public static func shouldDrop(_ config: GatewayConfig) -> Bool {
        geteuid() == 0 && config.user != nil && ProcessInfo.processInfo.environment[environmentKey] == nil
    }

    /// Binds every listener, gives the state folders to the user, and execs
    /// `setpriv … mxgate <same arguments>`. Returns only by throwing.
    public static func bindAndBecomeUser(_ config: GatewayConfig, arguments: [String]) throws -> Never {
        guard let name = config.user, let pw = getpwnam(name) else { throw Failure.exec("no such user \(config.user ?? "")") }
        let uid = pw.pointee.pw_uid, gid = pw.pointee.pw_gid
        var fds: [String] = []
        for l in config.listen {
            // One per event loop of the process to come (the same machine, so the same count).
            let socks = try ListenSockets.open(l, count: System.coreCount, siblings: config.listen, inheritable: true)
            fds.append(socks.map(String.init).joined(separator: ",") + "=\(l.description)")
        }
        var owned = [config.queueDirectory, config.quarantineDirectory]
        if case .maildir(let dir) = config.downstream { owned.append(dir) }
        for dir in owned {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o700])
            chownTree(dir, uid, gid)
        }
        // The audit file and its folder must be the user's to append and rotate.
        let auditDir = (config.auditPath as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: config.auditPath) {
            _ = FileManager.default.createFile(atPath: config.auditPath, contents: nil, attributes: [.posixPermissions: 0o640])
        }
        lchown(config.auditPath, uid, gid)
        for n in 1...max(1, config.auditKeep) { lchown("\(config.auditPath).\(n)", uid, gid) }
        if !auditDir.isEmpty, auditDir != config.directory { lchown(auditDir, uid, gid) }

        setenv(environmentKey, fds.joined(separator: ";"), 1)
        let candidates: [String] = ["/usr/bin/setpriv", "/bin/setpriv"]
        guard let setpriv = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw Failure.exec("setpriv (util-linux) not found")
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]
        let argv: [String] = [setpriv, "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--", exe] + Array(arguments.dropFirst())
        let cargs = argv.map { strdup($0) } + [nil]
        execv(setpriv, cargs)
        throw Failure.exec("execv \(setpriv): \(String(cString: strerror(errno)))")
    }

    /// "host:port" → inherited descriptors, in the process started by `bindAndBecomeUser`.
    static func inheritedListeners() -> [String: [Int32]] {
        guard let spec = ProcessInfo.processInfo.environment[environmentKey] else { return [:] }
        var out: [String: [Int32]] = [:]
        for item in spec.split(separator: ";") {
            let parts = item.split(separator: "=", maxSplits: 1)
            let fds = parts.first?.split(separator: ",").compactMap { Int32($0) } ?? []
            if parts.count == 2, !fds.isEmpty { out[String(parts[1])] = fds }
        }
        return out
    }

    /// chown of a folder and everything in it (no symlinks followed).
    static func chownTree(_ path: String, _ uid: uid_t, _ gid: gid_t) {
        guard lchown(path, uid, gid) == 0 else { return }
        guard let items = FileManager.default.enumerator(atPath: path) else { return }
        for case let item as String in items { lchown(path + "/" + item, uid, gid) }
    }
}
