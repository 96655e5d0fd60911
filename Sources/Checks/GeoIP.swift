import CMaxMindDB
import Foundation
import Policy

public struct GeoIPError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// A MaxMind DB file (GeoLite2/GeoIP2 Country, City or ASN, or any `.mmdb`
/// with the same layout) opened read-only through libmaxminddb, which maps
/// it into memory; lookups are thread-safe and never touch the network.
public final class GeoIPDatabase: @unchecked Sendable {
    // The MMDB_s lives at a stable address for the object's lifetime and is
    // only read after MMDB_open succeeds.
    private let db: UnsafeMutablePointer<MMDB_s>
    public let path: String

    public init(path: String) throws(GeoIPError) {
        self.path = path
        db = .allocate(capacity: 1)
        let rc = MMDB_open(path, UInt32(MMDB_MODE_MMAP), db)
        guard rc == MMDB_SUCCESS else {
            db.deallocate()
            throw GeoIPError(description: "cannot open GeoIP database \(path): \(String(cString: MMDB_strerror(rc)))")
        }
    }

    deinit {
        MMDB_close(db)
        db.deallocate()
    }

    /// The ISO 3166 country code for an address (`country.iso_code`, falling
    /// back to `registered_country.iso_code`), nil when the address is not listed.
    public func country(_ ip: String) -> String? {
        string(ip, ["country", "iso_code"]) ?? string(ip, ["registered_country", "iso_code"])
    }

    /// The autonomous system number (`autonomous_system_number`, as in GeoLite2-ASN).
    public func asn(_ ip: String) -> Int? {
        guard var entry = lookup(ip) else { return nil }
        var data = MMDB_entry_data_s()
        guard get(&entry, &data, ["autonomous_system_number"]), data.has_data else { return nil }
        switch Int32(data.type) {
        case MMDB_DATA_TYPE_UINT32: return Int(data.uint32)
        case MMDB_DATA_TYPE_UINT16: return Int(data.uint16)
        case MMDB_DATA_TYPE_UINT64: return Int(data.uint64)
        default: return nil
        }
    }

    private func lookup(_ ip: String) -> MMDB_entry_s? {
        var gai: Int32 = 0
        var err: Int32 = 0
        let result = MMDB_lookup_string(db, ip, &gai, &err)
        guard gai == 0, err == MMDB_SUCCESS, result.found_entry else { return nil }
        return result.entry
    }

    private func string(_ ip: String, _ path: [String]) -> String? {
        guard var entry = lookup(ip) else { return nil }
        var data = MMDB_entry_data_s()
        guard get(&entry, &data, path), data.has_data, Int32(data.type) == MMDB_DATA_TYPE_UTF8_STRING,
              let p = data.utf8_string else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: Int(data.data_size)), as: UTF8.self)
    }

    /// MMDB_aget_value with a NULL-terminated C array built from `path`.
    private func get(_ entry: inout MMDB_entry_s, _ data: inout MMDB_entry_data_s, _ path: [String]) -> Bool {
        var cStrings: [UnsafeMutablePointer<CChar>?] = path.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        cStrings.append(nil)
        return cStrings.withUnsafeBufferPointer { buf -> Bool in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { p in
                MMDB_aget_value(&entry, &data, p) == MMDB_SUCCESS
            }
        }
    }
}

/// Fills the client facts a policy needs before its first stage: reverse
/// DNS (with forward confirmation) and GeoIP country and ASN.
public struct ClientChecks: Sendable {
    /// The resolver, or a zone in memory (`mxgate test --dns-zone`).
    public let resolver: (any DNSLookup)?
    public let geo: GeoIPDatabase?
    public let asnDatabase: GeoIPDatabase?

    public init(resolver: (any DNSLookup)?, geo: GeoIPDatabase?, asnDatabase: GeoIPDatabase?) {
        self.resolver = resolver
        self.geo = geo
        self.asnDatabase = asnDatabase
    }

    /// Asks DNS lists, all at once; each answer is kept by query name. The
    /// resolver's timeout bounds every query, so the whole set takes at most
    /// that long (libunbound caches answers for their TTL).
    /// Looks up DNS list names concurrently. `budget` is what is left of the
    /// message's DNS time budget: a lookup it cuts short counts as not
    /// listed (as SpamAssassin and rspamd do when their time is up) and is
    /// named in `unanswered`, while a lookup that fails on its own (server
    /// failure, the per-lookup timeout) stays a failure, which tempfails.
    public func lookupLists(_ queries: [String], budget: Double = .infinity) async
        -> (answers: [String: DNSListAnswer], unanswered: [String]) {
        guard !queries.isEmpty else { return ([:], []) }
        guard let resolver else { return (Dictionary(uniqueKeysWithValues: Set(queries).map { ($0, .failed("no resolver")) }), []) }
        let cut = budget < resolver.timeout
        guard budget > 0 else { return (Dictionary(uniqueKeysWithValues: Set(queries).map { ($0, .notListed) }), Array(Set(queries)).sorted()) }
        return await withTaskGroup(of: (String, DNSListAnswer, Bool).self) { group in
            for q in Set(queries) {
                group.addTask {
                    switch await resolver.query(q, type: 1, timeout: budget) {
                    case .success(let records):
                        return (q, .listed(records.compactMap(DNSResolver.address)), false)
                    case .failure(let e) where e.isDefinite:
                        return (q, .notListed, false)
                    case .failure(.timeout) where cut:
                        return (q, .notListed, true)
                    case .failure(let e):
                        return (q, .failed(e.description), false)
                    }
                }
            }
            var out: [String: DNSListAnswer] = [:]
            var unanswered: [String] = []
            for await (q, a, late) in group {
                out[q] = a
                if late { unanswered.append(q) }
            }
            return (out, unanswered.sorted())
        }
    }
}
