//! A generated Eureka registry for the micro-benchmarks: `apps` applications with `per_app`
//! instances each, every instance shaped like a real Zowe API ML registration (the fields of
//! `examples/registry.xml` and of the captured Zowe JSON fixture: lease info, data center,
//! URLs, and metadata with one WebSocket route, one API route and a few other keys). Every
//! tenth instance is `DOWN`, the rest `UP`.
#![allow(dead_code)]

use std::fmt::Write as _;

/// The agent's allocator (see `src/main.rs`), so the figures are the ones the agent gets.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Applications in the generated registry.
pub const APPS: usize = 1_000;
/// Instances per application (10,000 instances in all).
pub const PER_APP: usize = 10;

fn status(i: usize) -> &'static str {
    if i % 10 == 9 {
        "DOWN"
    } else {
        "UP"
    }
}

/// XStream XML layout, as a Spring Cloud Eureka server serves `GET /eureka/apps`: compact,
/// without indentation (as in the captured Zowe wire-contract payload).
pub fn registry_xml(apps: usize, per_app: usize) -> String {
    registry_xml_pretty(apps, per_app)
        .lines()
        .map(str::trim)
        .collect()
}

/// The same registry, indented two spaces per level (as `examples/registry.xml`).
pub fn registry_xml_pretty(apps: usize, per_app: usize) -> String {
    let mut out = String::with_capacity(apps * per_app * 2400);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<applications>\n  <versions__delta>1</versions__delta>\n  <apps__hashcode>UP_{}_</apps__hashcode>\n",
        apps * per_app
    );
    for a in 0..apps {
        let app = format!("SERVICE{a:04}");
        let sid = app.to_lowercase();
        let _ = write!(out, "  <application>\n    <name>{app}</name>\n");
        for i in 0..per_app {
            let port = 10_000 + i;
            let host = format!("host-{a}-{i}.example.net");
            let _ = write!(
                out,
                r#"    <instance>
      <instanceId>{host}:{sid}:{port}</instanceId>
      <hostName>{host}</hostName>
      <app>{app}</app>
      <ipAddr>10.{hi}.{lo}.{i}</ipAddr>
      <status>{st}</status>
      <overriddenstatus>UNKNOWN</overriddenstatus>
      <port enabled="false">{port}</port>
      <securePort enabled="true">{port}</securePort>
      <countryId>1</countryId>
      <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo">
        <name>MyOwn</name>
      </dataCenterInfo>
      <leaseInfo>
        <renewalIntervalInSecs>30</renewalIntervalInSecs>
        <durationInSecs>90</durationInSecs>
        <registrationTimestamp>1764547200000</registrationTimestamp>
        <lastRenewalTimestamp>1764547230000</lastRenewalTimestamp>
        <evictionTimestamp>0</evictionTimestamp>
        <serviceUpTimestamp>1764547200000</serviceUpTimestamp>
      </leaseInfo>
      <metadata class="java.util.Collections$UnmodifiableMap">
        <apiml.service.title>Service {a} of the benchmark registry</apiml.service.title>
        <apiml.apiInfo.0.apiId>zowe.apiml.{sid}</apiml.apiInfo.0.apiId>
        <apiml.apiInfo.0.gatewayUrl>api/v1</apiml.apiInfo.0.gatewayUrl>
        <apiml.apiInfo.0.version>1.0.0</apiml.apiInfo.0.version>
        <apiml.authentication.scheme>httpBasicPassTicket</apiml.authentication.scheme>
        <apiml.routes.ws__v1.gatewayUrl>ws/v1</apiml.routes.ws__v1.gatewayUrl>
        <apiml.routes.ws__v1.serviceUrl>/{sid}/ws</apiml.routes.ws__v1.serviceUrl>
        <apiml.routes.api__v1.gatewayUrl>api/v1</apiml.routes.api__v1.gatewayUrl>
        <apiml.routes.api__v1.serviceUrl>/{sid}/api/v1</apiml.routes.api__v1.serviceUrl>
      </metadata>
      <homePageUrl>https://{host}:{port}/{sid}/</homePageUrl>
      <statusPageUrl>https://{host}:{port}/{sid}/application/info</statusPageUrl>
      <healthCheckUrl>https://{host}:{port}/{sid}/application/health</healthCheckUrl>
      <secureHealthCheckUrl>https://{host}:{port}/{sid}/application/health</secureHealthCheckUrl>
      <vipAddress>{sid}</vipAddress>
      <secureVipAddress>{sid}</secureVipAddress>
      <isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer>
      <lastUpdatedTimestamp>1764547200000</lastUpdatedTimestamp>
      <lastDirtyTimestamp>1764547200000</lastDirtyTimestamp>
      <actionType>ADDED</actionType>
    </instance>
"#,
                hi = a / 256,
                lo = a % 256,
                st = status(i),
            );
        }
        out.push_str("  </application>\n");
    }
    out.push_str("</applications>\n");
    out
}

/// The legacy JSON layout (Jettison / `EurekaJacksonCodec`), as Zowe's discovery service
/// serves `GET /eureka/apps` with `Accept: application/json`.
pub fn registry_json(apps: usize, per_app: usize) -> String {
    let mut out = String::with_capacity(apps * per_app * 2000);
    let _ = write!(
        out,
        r#"{{"applications":{{"versions__delta":"1","apps__hashcode":"UP_{}_","application":["#,
        apps * per_app
    );
    for a in 0..apps {
        let app = format!("SERVICE{a:04}");
        let sid = app.to_lowercase();
        if a > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"name":"{app}","instance":["#);
        for i in 0..per_app {
            let port = 10_000 + i;
            let host = format!("host-{a}-{i}.example.net");
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"instanceId":"{host}:{sid}:{port}","hostName":"{host}","app":"{app}","ipAddr":"10.{hi}.{lo}.{i}","status":"{st}","overriddenstatus":"UNKNOWN","port":{{"$":{port},"@enabled":"false"}},"securePort":{{"$":{port},"@enabled":"true"}},"countryId":1,"dataCenterInfo":{{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"}},"leaseInfo":{{"renewalIntervalInSecs":30,"durationInSecs":90,"registrationTimestamp":1764547200000,"lastRenewalTimestamp":1764547230000,"evictionTimestamp":0,"serviceUpTimestamp":1764547200000}},"metadata":{{"@class":"java.util.Collections$UnmodifiableMap","apiml.service.title":"Service {a} of the benchmark registry","apiml.apiInfo.0.apiId":"zowe.apiml.{sid}","apiml.apiInfo.0.gatewayUrl":"api/v1","apiml.apiInfo.0.version":"1.0.0","apiml.authentication.scheme":"httpBasicPassTicket","apiml.routes.ws_v1.gatewayUrl":"ws/v1","apiml.routes.ws_v1.serviceUrl":"/{sid}/ws","apiml.routes.api_v1.gatewayUrl":"api/v1","apiml.routes.api_v1.serviceUrl":"/{sid}/api/v1"}},"homePageUrl":"https://{host}:{port}/{sid}/","statusPageUrl":"https://{host}:{port}/{sid}/application/info","healthCheckUrl":"https://{host}:{port}/{sid}/application/health","secureHealthCheckUrl":"https://{host}:{port}/{sid}/application/health","vipAddress":"{sid}","secureVipAddress":"{sid}","isCoordinatingDiscoveryServer":"false","lastUpdatedTimestamp":"1764547200000","lastDirtyTimestamp":"1764547200000","actionType":"ADDED"}}"#,
                hi = a / 256,
                lo = a % 256,
                st = status(i),
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}}");
    out
}
