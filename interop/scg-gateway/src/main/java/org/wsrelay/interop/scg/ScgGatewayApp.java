package org.wsrelay.interop.scg;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * Spring Cloud Gateway (server, WebFlux on Reactor Netty), as Zowe API ML v3's gateway runs it,
 * with one static WebSocket route, for bench/run.sh's {@code scg-ws} and {@code scg-wss} targets.
 * The route and every setting are in {@code application.yml}; bench/run.sh sets the ports, the
 * echo backend's URL and the TLS bundle on the command line.
 */
@SpringBootApplication
public class ScgGatewayApp {
    public static void main(String[] args) {
        SpringApplication.run(ScgGatewayApp.class, args);
    }
}
